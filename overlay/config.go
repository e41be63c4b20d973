package overlay

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/bridge"
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

	// IPMasq keeps flanneld's masquerade rules for traffic leaving the overlay, and is
	// written to subnet.env as FLANNEL_IPMASQ (-ip-masq).
	IPMasq bool
	// IPMasqFullyRandomDisable masquerades without fully random source ports
	// (-ip-masq-fully-random-disable).
	IPMasqFullyRandomDisable bool
	// IPTablesForwardRules keeps rules that accept forwarded overlay traffic
	// (-iptables-forward-rules).
	IPTablesForwardRules bool
	// IPBlackholeRoute keeps a blackhole route for the host's own subnet
	// (-ip-blackhole-route).
	IPBlackholeRoute bool
	// IPTablesResync is how often the rules, the blackhole route and the bridge are
	// checked and repaired (-iptables-resync).
	IPTablesResync time.Duration

	// Bridge, when set, is the Linux bridge kept for container runtimes with the
	// lease's first address (FLANNEL_SUBNET) and the overlay MTU (-bridge).
	Bridge string
	// HyperdConfig, DockerOpts and CNIConf, when set, are files written for hyperd,
	// Docker and the CNI flannel plugin next to subnet.env (-hyper-config,
	// -docker-opts, -cni-conf). DockerOptsKey names the variable holding all Docker
	// options (-docker-opts-key); empty means DOCKER_OPTS.
	HyperdConfig  string
	DockerOpts    string
	DockerOptsKey string
	CNIConf       string

	// HealthAddr is host:port for /healthz and /readyz; empty serves nothing
	// (-healthz-ip, -healthz-port).
	HealthAddr string

	// Backends are the data planes the network config may name.
	Backends backend.Registry

	// Log receives the daemon's log; every subsystem adds its own attribute.
	Log *slog.Logger

	// Synced, when not nil, is called once on Run's goroutine after the backend has
	// taken the first full listing of the peers: the end of the daemon's start, after
	// which it only follows changes.
	Synced func()

	// acquireTimeout bounds one attempt to acquire the lease; 0 means
	// defaultAcquireTimeout. Tests shorten it.
	acquireTimeout time.Duration
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
	if (c.IPMasq || c.IPTablesForwardRules || c.IPBlackholeRoute || c.Bridge != "") &&
		c.IPTablesResync <= 0 {
		return fmt.Errorf("-iptables-resync %v: want at least 1 second", c.IPTablesResync)
	}
	if c.Bridge != "" {
		if err := bridge.CheckName(c.Bridge); err != nil {
			return fmt.Errorf("-bridge: %w", err)
		}
	}
	if c.HyperdConfig != "" && c.Bridge == "" {
		return fmt.Errorf("-hyper-config %s needs -bridge: hyperd must be told which "+
			"bridge to attach to", c.HyperdConfig)
	}
	if len(c.Backends) == 0 {
		return errors.New("no backends registered")
	}
	if c.Log == nil {
		return errors.New("no logger given")
	}
	return nil
}
