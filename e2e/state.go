package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/weftnet/weft/internal/atomicfile"
)

// State is what a lab records about itself in <StateDir>/<Name>/state.json, so that a
// later command finds its processes and namespaces again.
type State struct {
	Name       string
	Backend    string
	VNI        int `json:",omitempty"`
	Network    netip.Prefix
	EtcdPrefix string
	Created    time.Time

	Etcd  Proc
	Hosts []HostState
}

// HostState is one host of a lab.
type HostState struct {
	Index    int
	NS       string
	Underlay netip.Prefix
	// Dev is the host's underlay device, the daemon's -iface.
	Dev        string
	SubnetFile string
	HealthPort int `json:",omitempty"`
	// DaemonBridge says that the daemon keeps the pods' bridge itself (weftd -bridge);
	// otherwise the lab makes it.
	DaemonBridge bool `json:",omitempty"`
	Daemon       Proc
	Pods         []PodState `json:",omitempty"`
}

// Name returns the host's short name, "hI".
func (h HostState) Name() string { return fmt.Sprintf("h%d", h.Index) }

// PodState is one pod of a host.
type PodState struct {
	Index int
	NS    string
	// Addr is the pod's address with its lease's prefix length.
	Addr    netip.Prefix
	Gateway netip.Addr
}

// Proc records a process the lab started, precisely enough to find it again and to tell
// it from a later process that happens to reuse its PID.
type Proc struct {
	Argv []string
	PID  int `json:",omitempty"`
	// Start is the process's start time in clock ticks after boot, field 22 of
	// /proc/<pid>/stat.
	Start uint64 `json:",omitempty"`
	Log   string `json:",omitempty"`
}

// stateFile is the name of the state file in a lab's directory.
const stateFile = "state.json"

// ParseState decodes a state file. Every field is checked that the lab later relies on,
// so a damaged file fails here and not halfway through a teardown.
func ParseState(data []byte) (*State, error) {
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("lab state: %w", err)
	}
	if err := CheckName(s.Name); err != nil {
		return nil, fmt.Errorf("lab state: %w", err)
	}
	if err := s.Etcd.check("etcd"); err != nil {
		return nil, fmt.Errorf("lab state %s: %w", s.Name, err)
	}
	for _, h := range s.Hosts {
		if h.Index < 1 || h.Index > maxHosts || h.NS != HostNS(s.Name, h.Index) {
			return nil, fmt.Errorf("lab state %s: host %d in namespace %q is not one of its hosts",
				s.Name, h.Index, h.NS)
		}
		if err := h.Daemon.check(h.Name()); err != nil {
			return nil, fmt.Errorf("lab state %s: %w", s.Name, err)
		}
		for _, p := range h.Pods {
			if p.NS != PodNS(s.Name, h.Index, p.Index) {
				return nil, fmt.Errorf("lab state %s: pod %d of %s in namespace %q is not its pod",
					s.Name, p.Index, h.Name(), p.NS)
			}
		}
	}
	return &s, nil
}

func (p Proc) check(what string) error {
	if p.PID < 0 {
		return fmt.Errorf("%s: PID %d", what, p.PID)
	}
	if p.PID > 0 && len(p.Argv) == 0 {
		return fmt.Errorf("%s: PID %d without a command line", what, p.PID)
	}
	return nil
}

// labDir returns the directory of the lab called name.
func labDir(stateDir, name string) string { return filepath.Join(stateDir, name) }

// LoadState reads the state of the lab called name. A lab without a state file gives an
// error that wraps fs.ErrNotExist.
func LoadState(stateDir, name string) (*State, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	path := filepath.Join(labDir(stateDir, name), stateFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("lab %s: no state in %s: %w", name, path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("reading lab state: %w", err)
	}
	s, err := ParseState(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if s.Name != name {
		return nil, fmt.Errorf("%s: state of lab %q, want %q", path, s.Name, name)
	}
	return s, nil
}

// save writes s atomically into its lab's directory below stateDir.
func (s *State) save(stateDir string) error {
	data, err := json.MarshalIndent(s, "", "\t")
	if err != nil {
		return fmt.Errorf("encoding lab state: %w", err)
	}
	path := filepath.Join(labDir(stateDir, s.Name), stateFile)
	if err := atomicfile.Write(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("saving lab state: %w", err)
	}
	return nil
}
