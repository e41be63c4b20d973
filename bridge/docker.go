package bridge

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/weftnet/weft/internal/atomicfile"
	"github.com/weftnet/weft/subnet"
)

// DefaultDockerOptsKey is the name of the variable that carries all options at once,
// as flannel's mk-docker-opts.sh names it unless told otherwise with -k.
const DefaultDockerOptsKey = "DOCKER_OPTS"

// DockerOptions selects what [RenderDockerOpts] writes. The zero value is what
// mk-docker-opts.sh writes when run without options.
type DockerOptions struct {
	// Key names the variable holding all options together; empty means
	// DefaultDockerOptsKey (mk-docker-opts.sh -k).
	Key string

	// Individual and Combined select the one-variable-per-option lines
	// (DOCKER_OPT_BIP, DOCKER_OPT_IPMASQ, DOCKER_OPT_MTU; mk-docker-opts.sh -i) and the
	// Key line (-c). When both are false, both are written.
	Individual bool
	Combined   bool

	// OmitIPMasq leaves --ip-masq out, for Dockers too old to know it
	// (mk-docker-opts.sh -m).
	OmitIPMasq bool
}

// RenderDockerOpts returns the environment file that flannel's mk-docker-opts.sh would
// write for e, byte for byte: one NAME="value" line per option in the order BIP, IPMASQ,
// MTU, then Key with all of them, each after a space, for example
//
//	DOCKER_OPT_BIP="--bip=10.1.74.1/24"
//	DOCKER_OPT_IPMASQ="--ip-masq=true"
//	DOCKER_OPT_MTU="--mtu=1472"
//	DOCKER_OPTS=" --bip=10.1.74.1/24 --ip-masq=true --mtu=1472"
//
// --bip is the lease's first host (FLANNEL_SUBNET) and is left out without an IPv4
// lease; --mtu is left out when e.MTU is 0. --ip-masq is the inverse of e.IPMasq: when
// weftd masquerades, Docker must not. Unlike the script, the result does not depend on
// variables in the environment.
func RenderDockerOpts(e subnet.Env, o DockerOptions) ([]byte, error) {
	key := o.Key
	if key == "" {
		key = DefaultDockerOptsKey
	}
	if !isShellName(key) {
		return nil, fmt.Errorf("docker options key %q is not a shell variable name", key)
	}
	if e.MTU < 0 {
		return nil, fmt.Errorf("rendering docker options: negative MTU %d", e.MTU)
	}
	individual, combined := o.Individual, o.Combined
	if !individual && !combined {
		individual, combined = true, true
	}

	type opt struct{ name, value string }
	var opts []opt
	if e.Subnet.IsValid() {
		if !e.Subnet.Addr().Is4() {
			return nil, fmt.Errorf("rendering docker options: subnet %s is not IPv4", e.Subnet)
		}
		opts = append(opts, opt{"DOCKER_OPT_BIP", "--bip=" + subnet.FirstHost(e.Subnet).String()})
	}
	if !o.OmitIPMasq {
		opts = append(opts, opt{"DOCKER_OPT_IPMASQ", "--ip-masq=" + strconv.FormatBool(!e.IPMasq)})
	}
	if e.MTU > 0 {
		opts = append(opts, opt{"DOCKER_OPT_MTU", "--mtu=" + strconv.Itoa(e.MTU)})
	}

	var b, all bytes.Buffer
	for _, o := range opts {
		if individual {
			fmt.Fprintf(&b, "%s=\"%s\"\n", o.name, o.value)
		}
		all.WriteString(" " + o.value)
	}
	if combined {
		fmt.Fprintf(&b, "%s=\"%s\"\n", key, all.String())
	}
	return b.Bytes(), nil
}

// WriteDockerOpts renders e as [RenderDockerOpts] does and replaces path with it
// atomically, creating the parent directory (0755) when missing. The file is 0644 unless
// it exists with another mode. It reports whether the file changed: dockerd reads it
// only when it starts.
func WriteDockerOpts(path string, e subnet.Env, o DockerOptions) (bool, error) {
	data, err := RenderDockerOpts(e, o)
	if err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return false, fmt.Errorf("creating directory for %s: %w", path, err)
	}
	return atomicfile.WriteIfChanged(path, data, 0o644)
}

// isShellName reports whether s is a POSIX shell variable name.
func isShellName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		letter := c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}
