package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/weftnet/weft/e2e"
)

// demoVNI is the VNI of the demo's VXLAN network.
const demoVNI = 2000

func runDemo(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "demo", "weftctl demo [flags]\n\nBuilds a lab (3 hosts, VXLAN VNI 2000, "+
		"one pod each), prints its leases and a pod-to-pod ping matrix, and removes the lab. "+
		"Exits 1 if any pair of pods cannot reach each other.")
	o := e2e.Options{Name: "weft-demo", Hosts: 3, Pods: 1, Backend: "vxlan"}
	f := buildFlags(fs, &o)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	// The demo's VXLAN network has VNI 2000 unless told otherwise; the other backends
	// have none.
	vniGiven := false
	fs.Visit(func(f *flag.Flag) { vniGiven = vniGiven || f.Name == "vni" })
	if !vniGiven && o.Backend == "vxlan" {
		o.VNI = demoVNI
	}
	if err := f.apply(&o); err != nil {
		return err
	}
	if err := requireRoot(); err != nil {
		return err
	}
	log := newProgressLogger(e.stderr, f.verbose)
	o.Log = log

	backend := o.Backend
	if o.VNI != 0 {
		backend = fmt.Sprintf("%s VNI %d", o.Backend, o.VNI)
	}
	fmt.Fprintf(e.stdout, "weft demo: %d hosts, %s, %d pod(s) per host, lab %s\n\n",
		o.Hosts, backend, o.Pods, o.Name)

	l, err := e2e.Up(ctx, o)
	if err != nil {
		return err
	}
	defer func() {
		// The lab goes even after Ctrl-C.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		if err := l.Down(cctx); err != nil {
			fmt.Fprintf(e.stderr, "weftctl demo: removing lab %s: %v\n", o.Name, err)
			return
		}
		fmt.Fprintf(e.stdout, "\nlab %s removed\n", o.Name)
	}()

	fmt.Fprintln(e.stdout)
	if err := l.Status(ctx).WriteText(e.stdout); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout)

	log.Info("pinging every pod from every other pod")
	m, err := e2e.PingMatrix(ctx, l.Pods(), e2e.MatrixOptions{})
	if err != nil {
		return err
	}
	if err := m.WriteText(e.stdout); err != nil {
		return err
	}
	if failed := m.Failed(); len(failed) > 0 {
		fmt.Fprintf(e.stderr, "weftctl demo: %d pod pairs cannot reach each other\n", len(failed))
		return errSilent
	}
	return nil
}
