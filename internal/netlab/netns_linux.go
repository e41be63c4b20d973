package netlab

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Dir is where named network namespaces are bind-mounted, the directory iproute2 uses,
// so that `ip netns list` shows the lab's namespaces too.
const Dir = "/run/netns"

// Path returns the bind mount of the namespace called name.
func Path(name string) string { return filepath.Join(Dir, name) }

// Create makes a new, empty network namespace called name with its loopback up, bind-mounted
// at Path(name) so that it lives until Delete even with no process in it. The caller's
// namespace is not changed. A name that is already taken is an error, and a failed Create
// leaves nothing behind.
//
// Equivalent to: ip netns add <name> && ip -n <name> link set lo up
func Create(name string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	if err := os.MkdirAll(Dir, 0o755); err != nil {
		return fmt.Errorf("creating network namespace %s: %w", name, err)
	}
	path := Path(name)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("creating network namespace %s: %s already exists", name, path)
	}
	if err != nil {
		return fmt.Errorf("creating network namespace %s: %w", name, err)
	}
	f.Close()

	err = onThrowawayThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare: %w", err)
		}
		self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(self, path, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind-mounting %s on %s: %w", self, path, err)
		}
		return nil
	})
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("creating network namespace %s: %w", name, err)
	}

	if err := setLoopbackUp(name); err != nil {
		return errors.Join(err, Delete(name))
	}
	return nil
}

func setLoopbackUp(name string) error {
	h, err := NewHandle(name)
	if err != nil {
		return err
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		return fmt.Errorf("setting lo up in %s: %w", name, err)
	}
	return nil
}

// Delete removes the namespace called name: its bind mount goes, and the kernel frees the
// namespace, with every device in it, once no process or socket holds it any more. A
// namespace that does not exist is already deleted.
//
// Equivalent to: ip netns delete <name>
func Delete(name string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	path := Path(name)
	err := unix.Unmount(path, unix.MNT_DETACH)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("deleting network namespace %s: unmounting %s: %w", name, path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("deleting network namespace %s: %w", name, err)
	}
	return nil
}

// Exists reports whether a namespace called name is mounted under Dir.
func Exists(name string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(Path(name), &st); err != nil {
		return false
	}
	return st.Type == unix.NSFS_MAGIC
}

// List returns the names under Dir, sorted; a missing Dir is an empty list.
func List() ([]string, error) {
	entries, err := os.ReadDir(Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing network namespaces: %w", err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names, nil
}

// Open returns a handle to the namespace called name; the caller closes it.
func Open(name string) (netns.NsHandle, error) {
	h, err := netns.GetFromPath(Path(name))
	if err != nil {
		return netns.None(), fmt.Errorf("opening network namespace %s: %w", name, err)
	}
	return h, nil
}

// NewHandle returns a netlink handle whose requests act inside the namespace called name;
// the caller closes it.
func NewHandle(name string) (*netlink.Handle, error) {
	ns, err := Open(name)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("opening netlink in %s: %w", name, err)
	}
	return h, nil
}

// Do runs fn on an OS thread that has entered the namespace called name, waits for it and
// returns its error. Sockets that fn opens and processes that it starts belong to that
// namespace and may be used from any goroutine afterwards. The thread exits when fn
// returns.
func Do(name string, fn func() error) error {
	ns, err := Open(name)
	if err != nil {
		return err
	}
	defer ns.Close()
	return onThrowawayThread(func() error {
		if err := netns.Set(ns); err != nil {
			return fmt.Errorf("entering network namespace %s: %w", name, err)
		}
		return fn()
	})
}

// onThrowawayThread runs fn on a goroutine locked to its OS thread and never unlocked, so
// the Go runtime ends the thread with the goroutine instead of reusing it in whatever
// namespace fn left it in.
func onThrowawayThread(fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		done <- fn()
	}()
	return <-done
}

// Dial connects to addr from inside the namespace called name, like net.Dialer.DialContext.
func Dial(ctx context.Context, name, network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := Do(name, func() error {
		var d net.Dialer
		var err error
		conn, err = d.DialContext(ctx, network, addr)
		return err
	})
	return conn, err
}

// Dialer returns a dial function for the namespace called name, in the shape that
// http.Transport.DialContext and grpc.WithContextDialer want (the latter with "tcp").
func Dialer(name string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return Dial(ctx, name, network, addr)
	}
}

// Listen opens a listener inside the namespace called name, like net.Listen.
func Listen(name, network, addr string) (net.Listener, error) {
	var l net.Listener
	err := Do(name, func() error {
		var err error
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

// ListenPacket opens a packet socket inside the namespace called name, like
// net.ListenPacket.
func ListenPacket(name, network, addr string) (net.PacketConn, error) {
	var c net.PacketConn
	err := Do(name, func() error {
		var err error
		c, err = net.ListenPacket(network, addr)
		return err
	})
	return c, err
}

// Start starts cmd inside the namespace called name: the child is forked from a thread
// that entered the namespace and so belongs to it from its first instruction. The caller
// waits for cmd as usual.
//
// Equivalent to: ip netns exec <name> <cmd>
func Start(name string, cmd *exec.Cmd) error {
	err := Do(name, cmd.Start)
	if err != nil {
		return fmt.Errorf("starting %s in %s: %w", cmd.Path, name, err)
	}
	return nil
}

// SetSysctl writes value to the sysctl key (dotted, like "net.ipv4.ip_forward") of the
// namespace called name. Keys under net. are per namespace; others would change the
// whole machine and are refused.
//
// Equivalent to: ip netns exec <name> sysctl -w <key>=<value>
func SetSysctl(name, key, value string) error {
	if !strings.HasPrefix(key, "net.") || strings.Contains(key, "..") ||
		strings.Contains(key, "/") {
		return fmt.Errorf("setting sysctl %s in %s: only keys under net. are per namespace",
			key, name)
	}
	path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	return Do(name, func() error {
		if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
			return fmt.Errorf("setting sysctl %s=%s in %s: %w", key, value, name, err)
		}
		return nil
	})
}

// Exec replaces the calling process with argv running inside the namespace called name,
// with the environment env; argv[0] is looked up in PATH. It returns only on error.
//
// Equivalent to: exec ip netns exec <name> <argv>
func Exec(name string, argv, env []string) error {
	if len(argv) == 0 {
		return fmt.Errorf("running a command in %s: empty command line", name)
	}
	prog, err := exec.LookPath(argv[0])
	if err != nil {
		return fmt.Errorf("running %s in %s: %w", argv[0], name, err)
	}
	ns, err := Open(name)
	if err != nil {
		return err
	}
	defer ns.Close()

	// execve replaces the whole process from this thread, in this thread's namespace. On
	// failure the thread stays locked, and so is discarded with the goroutine's end.
	return onThrowawayThread(func() error {
		if err := netns.Set(ns); err != nil {
			return fmt.Errorf("entering network namespace %s: %w", name, err)
		}
		err := unix.Exec(prog, argv, env)
		return fmt.Errorf("running %s in %s: %w", prog, name, err)
	})
}
