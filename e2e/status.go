package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/weftnet/weft/subnet"
)

// Status is a lab's record together with what is live now: which of its processes run,
// and the leases in its etcd.
type Status struct {
	Name       string
	Backend    string
	VNI        int `json:",omitempty"`
	Network    netip.Prefix
	EtcdPrefix string
	Endpoint   string
	Etcd       ProcStatus
	// EtcdError says why the leases could not be read; empty when they were.
	EtcdError string `json:",omitempty"`
	Hosts     []HostStatus
	// Outside is the lab's outside namespace (Options.Outside); nil when it has none.
	Outside *OutsideStatus `json:",omitempty"`
	// OtherLeases are leases in the lab's etcd that no host of the lab holds.
	OtherLeases []LeaseStatus `json:",omitempty"`
}

// ProcStatus is one of the lab's processes.
type ProcStatus struct {
	PID     int
	Running bool
	Argv    []string
	Log     string
}

// HostStatus is one host of a lab.
type HostStatus struct {
	Name     string
	NS       string
	Underlay netip.Prefix
	Daemon   ProcStatus
	// Lease is the lease whose PublicIP is the host's underlay address; nil when none.
	Lease *LeaseStatus `json:",omitempty"`
	Pods  []PodState   `json:",omitempty"`
}

// OutsideStatus is a lab's machine on the underlay that is not in the overlay.
type OutsideStatus struct {
	NS       string
	Underlay netip.Prefix
}

// LeaseStatus is a lease as the lab shows it.
type LeaseStatus struct {
	Subnet      netip.Prefix
	PublicIP    netip.Addr
	BackendType string `json:",omitempty"`
	// VtepMAC is the VXLAN device's MAC address from BackendData; empty for other backends.
	VtepMAC    string    `json:",omitempty"`
	Expiration time.Time `json:",omitempty"`
}

// leaseStatus condenses a lease for display.
func leaseStatus(l subnet.Lease) LeaseStatus {
	return LeaseStatus{
		Subnet:      l.Subnet,
		PublicIP:    l.Attrs.PublicIP,
		BackendType: l.Attrs.BackendType,
		VtepMAC:     vtepMAC(l.Attrs.BackendData),
		Expiration:  l.Expiration,
	}
}

// vtepMAC returns BackendData's VtepMAC, or "" when it has none.
func vtepMAC(data json.RawMessage) string {
	var v struct{ VtepMAC string }
	if len(data) == 0 || json.Unmarshal(data, &v) != nil {
		return ""
	}
	return v.VtepMAC
}

// WriteText prints s for people: a header line, a table of hosts with their leases, and a
// table of pods.
func (s *Status) WriteText(w io.Writer) error {
	var b strings.Builder
	backend := s.Backend
	if s.VNI != 0 {
		backend += fmt.Sprintf(" VNI %d", s.VNI)
	}
	fmt.Fprintf(&b, "lab %s: %s, network %s, etcd %s %s\n", s.Name, backend, s.Network,
		s.Endpoint, running(s.Etcd))
	if s.EtcdError != "" {
		fmt.Fprintf(&b, "  leases unknown: %s\n", s.EtcdError)
	}
	b.WriteString("\n")

	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tNAMESPACE\tUNDERLAY\tSUBNET\tPUBLICIP\tVTEPMAC\tDAEMON")
	for _, h := range s.Hosts {
		subnet, publicIP, mac := "-", "-", "-"
		if h.Lease != nil {
			subnet, publicIP = h.Lease.Subnet.String(), h.Lease.PublicIP.String()
			if h.Lease.VtepMAC != "" {
				mac = h.Lease.VtepMAC
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.Name, h.NS, h.Underlay, subnet,
			publicIP, mac, running(h.Daemon))
	}
	for _, l := range s.OtherLeases {
		fmt.Fprintf(tw, "?\t-\t-\t%s\t%s\t%s\t-\n", l.Subnet, l.PublicIP, orDash(l.VtepMAC))
	}
	tw.Flush()
	if s.Outside != nil {
		fmt.Fprintf(&b, "outside: namespace %s, %s on the underlay, no route to the overlay\n",
			s.Outside.NS, s.Outside.Underlay)
	}

	var pods []string
	for _, h := range s.Hosts {
		for _, p := range h.Pods {
			pods = append(pods, fmt.Sprintf("%s\t%s\t%s\t%s", p.NS, h.Name, p.Addr, p.Gateway))
		}
	}
	if len(pods) > 0 {
		b.WriteString("\n")
		tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "POD\tHOST\tADDRESS\tGATEWAY")
		for _, p := range pods {
			fmt.Fprintln(tw, p)
		}
		tw.Flush()
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func running(p ProcStatus) string {
	switch {
	case p.PID == 0:
		return "(not started)"
	case p.Running:
		return fmt.Sprintf("pid %d", p.PID)
	default:
		return fmt.Sprintf("pid %d (gone)", p.PID)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
