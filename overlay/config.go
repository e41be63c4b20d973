package overlay

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/subnet"
)

// MaxRenewMargin is the largest renew margin flanneld accepts, a minute short of the
// 24-hour lease.
const MaxRenewMargin = 1439 * time.Minute

// Config is everything the daemon runs with: weftd's flags and FLANNELD_* variables,
// parsed, plus the backends it may use and its logger.
type Config struct {
	// Etcd says how to reach etcd and under which prefix the network lives
	// (-etcd-endpoints, -etcd-prefix, -etcd-keyfile, -etcd-certfile, -etcd-cafile,
	// -etcd-username, -etcd-password).
	Etcd subnet.EtcdOptions

	// Interface chooses the external interface (-iface, -iface-regex, -iface-can-reach,
	// -public-ip, -public-ipv6). Its IPv6 field is set from the network config.
	Interface InterfaceSpec

	// SubnetFile is where subnet.env is written, and read back at the next start to
	// keep the same subnet (-subnet-file).
	SubnetFile string

	// RenewMargin is how long before expiry the lease is renewed, 1 to 1439 minutes
	// (-subnet-lease-renew-margin).
	RenewMargin time.Duration

	// IPMasq is written to subnet.env as FLANNEL_IPMASQ (-ip-masq).
	IPMasq bool

	// IPMasqFullyRandomDisable, IPTablesResync, IPTablesForwardRules and
	// IPBlackholeRoute are flanneld's rule options (-ip-masq-fully-random-disable,
	// -iptables-resync, -iptables-forward-rules, -ip-blackhole-route).
	//
	// TODO: the daemon does not install masquerade or forward rules nor keep a
	// blackhole route yet; these options are accepted and logged. Until then a host
	// that needs them must get them from elsewhere, and -ip-masq only tells subnet.env
	// consumers (Docker's --ip-masq) that weftd masquerades.
	IPMasqFullyRandomDisable bool
	IPTablesResync           time.Duration
	IPTablesForwardRules     bool
	IPBlackholeRoute         bool

	// HealthAddr is host:port for /healthz and /readyz; empty serves nothing
	// (-healthz-ip, -healthz-port).
	HealthAddr string

	// Backends are the data planes the network config may name.
	Backends backend.Registry

	// Log receives the daemon's log; every subsystem adds its own attribute.
	Log *slog.Logger
}

// validate checks what Run cannot start without. Errors name the flag and its value.
func (c *Config) validate() error {
	if c.RenewMargin < time.Minute || c.RenewMargin > MaxRenewMargin ||
		c.RenewMargin%time.Minute != 0 {
		return fmt.Errorf("-subnet-lease-renew-margin %v: want whole minutes from 1 to 1439",
			c.RenewMargin)
	}
	if c.SubnetFile == "" {
		return errors.New("-subnet-file is empty")
	}
	if len(c.Backends) == 0 {
		return errors.New("no backends registered")
	}
	if c.Log == nil {
		return errors.New("no logger given")
	}
	return nil
}
