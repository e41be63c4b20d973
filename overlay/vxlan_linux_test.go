package overlay

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/vxlan"
	"github.com/weftnet/weft/internal/etcdtest"
	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/subnet"
)

// TestRunTwoHostsVXLAN runs two daemons with the vxlan backend, each in a namespace of
// its own joined by a veth pair, and sends TCP traffic from one host's overlay address
// to the other's across the VXLAN devices the daemons programmed.
func TestRunTwoHostsVXLAN(t *testing.T) {
	nstest.RequireRoot(t)
	ns1, ns2 := nstest.New(t), nstest.New(t)
	h1, h2 := nstest.Handle(t, ns1), nstest.Handle(t, ns2)

	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: "wt-d-a", MTU: 1500},
		PeerName:      "wt-d-b",
		PeerNamespace: netlink.NsFd(int(ns2)),
	}
	if err := h1.LinkAdd(veth); err != nil {
		t.Fatalf("adding veth pair: %v", err)
	}
	for _, side := range []struct {
		h    *netlink.Handle
		name string
		addr string
	}{{h1, "wt-d-a", "198.18.4.1/24"}, {h2, "wt-d-b", "198.18.4.2/24"}} {
		l, err := side.h.LinkByName(side.name)
		if err != nil {
			t.Fatal(err)
		}
		addAddr(t, side.h, l, side.addr, 0, 0)
		if err := side.h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}

	etcd := etcdtest.Start(t)
	const prefix = "/weft/vxlan"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := etcd.Client.Put(ctx, prefix+"/config",
		`{"Network": "198.19.0.0/16", "Backend": {"Type": "vxlan", "VNI": 7}}`); err != nil {
		t.Fatal(err)
	}

	type host struct {
		ns      netns.NsHandle
		h       *netlink.Handle
		envFile string
		done    <-chan error
	}
	hosts := []*host{{ns: ns1, h: h1}, {ns: ns2, h: h2}}
	for i, hs := range hosts {
		hs.envFile = filepath.Join(t.TempDir(), "subnet.env")
		hs.done = runInNetNS(t, ctx, hs.ns, Config{
			Etcd:        subnet.EtcdOptions{Endpoints: etcd.Endpoints, Prefix: prefix},
			Interface:   InterfaceSpec{Ifaces: []string{[]string{"wt-d-a", "wt-d-b"}[i]}},
			SubnetFile:  hs.envFile,
			RenewMargin: subnet.DefaultRenewMargin,
			Backends:    backend.Registry{vxlan.TypeName: vxlan.New},
			Log:         testLog(t).With("host", i+1),
		})
	}

	var subnets [2]netip.Prefix
	for i, hs := range hosts {
		eventually(t, fmt.Sprintf("host %d subnet.env", i+1), 20*time.Second, func() bool {
			e, _ := subnet.ReadEnvFile(hs.envFile)
			subnets[i] = e.Subnet
			return e.Subnet.IsValid() && e.MTU == 1450
		})
	}

	// Each host routes the other's subnet through flannel.7.
	for i, hs := range hosts {
		peer := subnets[1-i]
		eventually(t, fmt.Sprintf("host %d route to %s", i+1, peer), 10*time.Second,
			func() bool {
				routes, err := hs.h.RouteListFiltered(netlink.FAMILY_V4,
					&netlink.Route{Table: unix.RT_TABLE_MAIN, Dst: ipNet(peer)},
					netlink.RT_FILTER_TABLE|netlink.RT_FILTER_DST)
				if err != nil || len(routes) != 1 {
					return false
				}
				l, err := hs.h.LinkByIndex(routes[0].LinkIndex)
				return err == nil && l.Attrs().Name == "flannel.7"
			})
	}

	// TCP from host 1's overlay address to host 2's, through the tunnel.
	var ln net.Listener
	nstest.Do(t, ns2, func() {
		var err error
		ln, err = net.Listen("tcp", netip.AddrPortFrom(subnets[1].Addr(), 0).String())
		if err != nil {
			t.Errorf("listening in host 2: %v", err)
		}
	})
	if ln == nil {
		t.FailNow()
	}
	defer ln.Close()
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		_, err = io.Copy(c, io.LimitReader(c, 5))
		served <- err
	}()
	var reply string
	nstest.Do(t, ns1, func() {
		d := net.Dialer{Timeout: 5 * time.Second,
			LocalAddr: &net.TCPAddr{IP: subnets[0].Addr().AsSlice()}}
		c, err := d.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Errorf("dialing host 2 from host 1: %v", err)
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "hello")
		b, _ := io.ReadAll(io.LimitReader(c, 5))
		reply = string(b)
	})
	if reply != "hello" {
		t.Errorf("echo across the overlay returned %q", reply)
	}
	if err := <-served; err != nil {
		t.Errorf("serving the echo: %v", err)
	}

	cancel()
	for i, hs := range hosts {
		select {
		case err := <-hs.done:
			if err != nil {
				t.Errorf("host %d Run: %v", i+1, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("host %d Run did not return within 10s of cancel", i+1)
		}
	}
	if _, err := h1.LinkByName("flannel.7"); err != nil {
		t.Errorf("flannel.7 gone after the daemon stopped: %v", err)
	}
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
