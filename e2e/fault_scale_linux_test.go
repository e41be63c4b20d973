package e2e

import (
	"context"
	"testing"
	"time"
)

// TestFaultManyHostsAtOnce starts 20 daemons at the same moment against one etcd: they
// race for subnets, and each must end with a subnet of its own, no daemon exiting, and
// every host following the 19 others.
func TestFaultManyHostsAtOnce(t *testing.T) {
	const hosts = 20
	o := faultOptions(t, "many")
	o.Backend, o.VNI, o.Hosts = "vxlan", testVNI, hosts
	o.ReadyTimeout = 90 * time.Second
	l := upLab(t, o)
	ctx := context.Background()

	leases, err := l.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	subnets := map[string]string{}
	publicIPs := map[string]bool{}
	for _, lease := range leases {
		if other, dup := subnets[lease.Subnet.String()]; dup {
			t.Errorf("%s is held by %s and %s", lease.Subnet, other, lease.Attrs.PublicIP)
		}
		subnets[lease.Subnet.String()] = lease.Attrs.PublicIP.String()
		publicIPs[lease.Attrs.PublicIP.String()] = true
	}
	if len(leases) != hosts || len(publicIPs) != hosts {
		t.Errorf("%d leases of %d hosts, want one for each of %d hosts: %v", len(leases),
			len(publicIPs), hosts, subnets)
	}

	for i := 1; i <= hosts; i++ {
		waitFor(t, "every host following the 19 others", 30*time.Second, func() bool {
			return metric(t, l, i, "weft_peers") == hosts-1
		})
	}
	daemonsAlive(t, l)
}
