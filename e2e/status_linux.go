package e2e

import (
	"context"
	"time"

	"github.com/weftnet/weft/internal/netlab"
)

// Status reports the lab as it is now. Leases come from etcd within a few seconds; when
// etcd does not answer, EtcdError says so and the rest is still filled in.
func (l *Lab) Status(ctx context.Context) *Status {
	s := &Status{
		Name:       l.state.Name,
		Backend:    l.state.Backend,
		VNI:        l.state.VNI,
		Network:    l.state.Network,
		EtcdPrefix: l.state.EtcdPrefix,
		Endpoint:   EtcdEndpoint(),
		Etcd:       procStatus(l.state.Etcd),
	}
	if ns := OutNS(l.state.Name); netlab.Exists(ns) {
		s.Outside = &OutsideStatus{NS: ns, Underlay: outsideAddr}
	}
	for _, h := range l.state.Hosts {
		s.Hosts = append(s.Hosts, HostStatus{
			Name:     h.Name(),
			NS:       h.NS,
			Underlay: h.Underlay,
			Daemon:   procStatus(h.Daemon),
			Pods:     h.Pods,
		})
	}

	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	leases, err := l.Leases(ctx)
	if err != nil {
		s.EtcdError = err.Error()
		return s
	}
	for _, lease := range leases {
		ls := leaseStatus(lease)
		held := false
		for k := range s.Hosts {
			if s.Hosts[k].Underlay.Addr() == ls.PublicIP {
				s.Hosts[k].Lease = &ls
				held = true
			}
		}
		if !held {
			s.OtherLeases = append(s.OtherLeases, ls)
		}
	}
	return s
}

func procStatus(p Proc) ProcStatus {
	return ProcStatus{PID: p.PID, Running: p.alive(), Argv: p.Argv, Log: p.Log}
}
