package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/logbuf"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/etcdtest"
)

// These tests run the weftd binary, built once per test run, against a real etcd in the
// test process. They choose the loopback interface with -iface lo, which only reads the
// kernel, so they need no root; the alloc backend programs nothing.

var weftdBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "weftd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	weftdBin = filepath.Join(dir, "weftd")
	out, err := exec.Command("go", "build", "-o", weftdBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building weftd: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// weftd is one running weftd process.
type weftd struct {
	cmd    *exec.Cmd
	stderr *logbuf.Buffer
	done   chan struct{}
	code   int
}

// startWeftd starts weftd with args and extra environment; it is killed, by its PID, if
// it is still running when the test ends. The forward rules, which flanneld installs by
// default, are turned off: weftd runs in the namespace the test started in, whose
// netfilter state is not the test's to change.
func startWeftd(t *testing.T, env []string, args ...string) *weftd {
	t.Helper()
	p := &weftd{stderr: &logbuf.Buffer{}, done: make(chan struct{})}
	args = append([]string{"-iptables-forward-rules=false"}, args...)
	p.cmd = exec.Command(weftdBin, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting weftd: %v", err)
	}
	go func() {
		p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("weftd %s stderr:\n%s", strings.Join(args, " "), p.stderr)
		}
	})
	return p
}

// waitExit waits for the process to exit and returns its status.
func (p *weftd) waitExit(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(timeout):
		t.Fatalf("weftd still running after %v", timeout)
		return -1
	}
}

// stop sends SIGTERM and returns the exit status.
func (p *weftd) stop(t *testing.T) int {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("signalling weftd: %v", err)
	}
	return p.waitExit(t, 10*time.Second)
}

// waitLog waits until stderr contains s.
func (p *weftd) waitLog(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.stderr.String(), s) {
		select {
		case <-p.done:
			t.Fatalf("weftd exited with %d before logging %q", p.code, s)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("weftd did not log %q within %v", s, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// get returns the status and body of a health endpoint, or 0 when nothing answers.
func get(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func waitStatus(t *testing.T, url string, status int, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		code, body := get(url)
		if code == status {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s answered %d %q, not %d, within %v", url, code, body, status, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func put(t *testing.T, c *clientv3.Client, key, value string, opts ...clientv3.OpOption) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, key, value, opts...); err != nil {
		t.Fatalf("putting %s: %v", key, err)
	}
}

// leases returns the keys below prefix/subnets/ with their values.
func leases(t *testing.T, c *clientv3.Client, prefix string) map[string]*mvccpb.KeyValue {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Get(ctx, prefix+"/subnets/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*mvccpb.KeyValue{}
	for _, kv := range resp.Kvs {
		out[string(kv.Key)] = kv
	}
	return out
}

// listenNotify opens a socket standing in for systemd's NOTIFY_SOCKET and returns what
// arrives on it.
func listenNotify(t *testing.T) (string, <-chan string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	// weftd sends STATUS= lines besides READY=1; a reader that no test drains any more
	// drops them instead of blocking, so that the cleanup below cannot hang.
	msgs := make(chan string, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 512)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			select {
			case msgs <- string(buf[:n]):
			default:
			}
		}
	}()
	t.Cleanup(func() {
		conn.Close()
		<-done
	})
	return path, msgs
}

const allocConfig = `{"Network": "198.19.0.0/16", "Backend": {"Type": "alloc"}}`

var envLine = regexp.MustCompile(`^FLANNEL_NETWORK=198\.19\.0\.0/16\n` +
	`FLANNEL_SUBNET=198\.19\.(\d+)\.1/24\nFLANNEL_MTU=(\d+)\nFLANNEL_IPMASQ=false\n$`)

// TestLifecycle runs one host through start, readiness, stop and a second start.
func TestLifecycle(t *testing.T) {
	etcd := etcdtest.Start(t)
	const prefix = "/coreos.com/network"
	put(t, etcd.Client, prefix+"/config", allocConfig)

	dir := t.TempDir()
	envFile := filepath.Join(dir, "run", "subnet.env")
	port := freePort(t)
	notifyPath, notes := listenNotify(t)
	args := []string{
		"-etcd-endpoints", etcd.Endpoints[0],
		"-iface", "lo",
		"-subnet-file", envFile,
		"-healthz-ip", "127.0.0.1", "-healthz-port", fmt.Sprint(port),
		"-etcd-password", "pa55word-in-test",
	}
	p := startWeftd(t, []string{"NOTIFY_SOCKET=" + notifyPath}, args...)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)

	if body := waitStatus(t, base+"/readyz", 200, 30*time.Second); body != "flanneld is ready" {
		t.Errorf("/readyz body %q", body)
	}
	if code, body := get(base + "/healthz"); code != 200 || body != "flanneld is running" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	var sent []string
	timeout := time.After(10 * time.Second)
wait:
	for {
		select {
		case msg := <-notes:
			sent = append(sent, msg)
			if strings.Contains(msg, "READY=1") {
				break wait
			}
		case <-timeout:
			t.Errorf("no READY=1 on NOTIFY_SOCKET; sent %q", sent)
			break wait
		}
	}

	// The lease: one key, flanneld's alloc value, a 24-hour etcd lease.
	ls := leases(t, etcd.Client, prefix)
	if len(ls) != 1 {
		t.Fatalf("%d leases in etcd, want 1: %v", len(ls), ls)
	}
	var key string
	var kv *mvccpb.KeyValue
	for key, kv = range ls {
		break
	}
	if want := `{"PublicIP":"127.0.0.1","PublicIPv6":null}`; string(kv.Value) != want {
		t.Errorf("lease value %s, want %s", kv.Value, want)
	}
	ttl, err := etcd.Client.TimeToLive(context.Background(), clientv3.LeaseID(kv.Lease))
	if err != nil || ttl.TTL < 86000 || ttl.TTL > 86400 {
		t.Errorf("lease TTL %v (err %v), want about 86400 s", ttl, err)
	}

	// subnet.env, exactly flanneld's format, for the leased subnet.
	data, err := os.ReadFile(envFile)
	if err != nil {
		t.Fatal(err)
	}
	m := envLine.FindStringSubmatch(string(data))
	if m == nil {
		t.Fatalf("subnet.env is not in flanneld's format:\n%s", data)
	}
	if want := prefix + "/subnets/198.19." + m[1] + ".0-24"; key != want {
		t.Errorf("lease key %s, but subnet.env names %s", key, want)
	}
	if lo, err := net.InterfaceByName("lo"); err == nil && m[2] != fmt.Sprint(lo.MTU) {
		t.Errorf("FLANNEL_MTU=%s, want lo's MTU %d", m[2], lo.MTU)
	}

	if code := p.stop(t); code != 0 {
		t.Errorf("exit status after SIGTERM %d, want 0", code)
	}
	log := p.stderr.String()
	if !strings.Contains(log, "exiting") {
		t.Errorf("no \"exiting\" in the log:\n%s", log)
	}
	if strings.Contains(log, "pa55word-in-test") {
		t.Errorf("the etcd password is in the log:\n%s", log)
	}
	if _, ok := leases(t, etcd.Client, prefix)[key]; !ok {
		t.Errorf("lease %s was removed at shutdown", key)
	}

	// A second start, with subnet.env gone, finds its lease by PublicIP.
	os.Remove(envFile)
	p2 := startWeftd(t, nil, args...)
	waitStatus(t, base+"/readyz", 200, 30*time.Second)
	data2, _ := os.ReadFile(envFile)
	if string(data2) != string(data) {
		t.Errorf("second start wrote\n%s\nwant the same subnet as before\n%s", data2, data)
	}
	if n := len(leases(t, etcd.Client, prefix)); n != 1 {
		t.Errorf("%d leases after the second start, want 1", n)
	}
	if code := p2.stop(t); code != 0 {
		t.Errorf("second exit status %d, want 0", code)
	}
}

// TestWaitsForConfig starts weftd before the network config exists.
func TestWaitsForConfig(t *testing.T) {
	etcd := etcdtest.Start(t)
	const prefix = "/weft/wait"
	port := freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	args := []string{
		"-etcd-endpoints", etcd.Endpoints[0], "-etcd-prefix", prefix, "-iface", "lo",
		"-subnet-file", filepath.Join(t.TempDir(), "subnet.env"),
		"-healthz-ip", "127.0.0.1", "-healthz-port", fmt.Sprint(port),
	}

	t.Run("then proceeds", func(t *testing.T) {
		p := startWeftd(t, nil, args...)
		p.waitLog(t, "waiting for the network config", 10*time.Second)
		waitStatus(t, base+"/healthz", 200, 10*time.Second)
		if code, body := get(base + "/readyz"); code != 503 || body != "flanneld is not ready yet" {
			t.Errorf("/readyz while waiting = %d %q", code, body)
		}
		time.Sleep(2500 * time.Millisecond)
		if n := strings.Count(p.stderr.String(), "waiting for the network config"); n != 1 {
			t.Errorf("the wait was logged %d times, want once", n)
		}
		if !strings.Contains(p.stderr.String(), prefix+"/config") {
			t.Errorf("the log does not name the key %s/config", prefix)
		}

		put(t, etcd.Client, prefix+"/config", allocConfig)
		waitStatus(t, base+"/readyz", 200, 10*time.Second)
		if code := p.stop(t); code != 0 {
			t.Errorf("exit status %d, want 0", code)
		}
	})
}

// TestStopWhileWaiting stops weftd with SIGTERM and SIGINT before it has a config or
// while etcd is unreachable.
func TestStopWhileWaiting(t *testing.T) {
	etcd := etcdtest.Start(t)
	tests := []struct {
		name      string
		endpoints string
		signal    syscall.Signal
		wantLog   string
	}{
		{name: "no config SIGTERM", endpoints: etcd.Endpoints[0], signal: syscall.SIGTERM,
			wantLog: "waiting for the network config"},
		{name: "no config SIGINT", endpoints: etcd.Endpoints[0], signal: syscall.SIGINT,
			wantLog: "waiting for the network config"},
		{name: "etcd unreachable",
			endpoints: fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
			signal:    syscall.SIGTERM,
			wantLog:   "cannot reach etcd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := startWeftd(t, nil, "-etcd-endpoints", tt.endpoints, "-etcd-prefix", "/none",
				"-iface", "lo", "-subnet-file", filepath.Join(t.TempDir(), "subnet.env"))
			p.waitLog(t, tt.wantLog, 30*time.Second)
			if !strings.Contains(p.stderr.String(), tt.endpoints) && tt.name == "etcd unreachable" {
				t.Errorf("the log does not name the endpoints %s", tt.endpoints)
			}
			p.cmd.Process.Signal(tt.signal)
			if code := p.waitExit(t, 10*time.Second); code != 0 {
				t.Errorf("exit status %d, want 0", code)
			}
			if !strings.Contains(p.stderr.String(), "exiting") {
				t.Error("no \"exiting\" in the log")
			}
		})
	}
}

// TestInvalidConfigWaits puts configs that do not validate: weftd keeps waiting,
// saying once what is wrong, until it is stopped.
func TestInvalidConfigWaits(t *testing.T) {
	etcd := etcdtest.Start(t)
	tests := []struct {
		name    string
		config  string
		wantLog string
	}{
		{name: "not JSON", config: `{"Network": "198.19.0.0/16",`, wantLog: "not a JSON object"},
		{name: "IPv6 network", config: `{"Network": "fc00::/48"}`,
			wantLog: `Network \"fc00::/48\" is not an IPv4 CIDR`},
		{name: "subnet length", config: `{"Network": "198.19.0.0/16", "SubnetLen": 31}`,
			wantLog: "SubnetLen"},
		{name: "subnet min off a boundary",
			config:  `{"Network": "198.19.0.0/16", "SubnetMin": "198.19.1.1"}`,
			wantLog: "SubnetMin"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			prefix := fmt.Sprintf("/weft/invalid%d", i)
			put(t, etcd.Client, prefix+"/config", tt.config)
			p := startWeftd(t, nil, "-etcd-endpoints", etcd.Endpoints[0], "-etcd-prefix", prefix,
				"-iface", "lo", "-subnet-file", filepath.Join(t.TempDir(), "subnet.env"))
			p.waitLog(t, "network config is invalid", 10*time.Second)
			time.Sleep(2500 * time.Millisecond)
			log := p.stderr.String()
			if n := strings.Count(log, "network config is invalid"); n != 1 {
				t.Errorf("the invalid config was reported %d times, want once:\n%s", n, log)
			}
			if !strings.Contains(log, tt.wantLog) || !strings.Contains(log, prefix+"/config") {
				t.Errorf("the log does not name the key and %q:\n%s", tt.wantLog, log)
			}
			if code := p.stop(t); code != 0 {
				t.Errorf("exit status %d, want 0", code)
			}
		})
	}
}

// TestStartupFailures checks that each input weftd cannot start with ends it with
// status 1 and a message naming the thing at fault.
func TestStartupFailures(t *testing.T) {
	etcd := etcdtest.Start(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() })

	// Out of subnets: the range holds one subnet and another host has it.
	put(t, etcd.Client, "/weft/full/config", `{"Network": "198.19.0.0/16", `+
		`"SubnetMin": "198.19.5.0", "SubnetMax": "198.19.5.0", "Backend": {"Type": "alloc"}}`)
	put(t, etcd.Client, "/weft/full/subnets/198.19.5.0-24",
		`{"PublicIP":"198.18.0.77","PublicIPv6":null}`)
	put(t, etcd.Client, "/weft/unknown/config",
		`{"Network": "198.19.0.0/16", "Backend": {"Type": "vxlan-ng"}}`)
	put(t, etcd.Client, "/weft/noiface/config", allocConfig)
	put(t, etcd.Client, "/weft/busy/config", allocConfig)

	tests := []struct {
		name    string
		args    []string // -iface lo unless they give -iface
		wantLog []string
	}{
		{name: "renew margin", args: []string{"-subnet-lease-renew-margin", "1440"},
			wantLog: []string{"-subnet-lease-renew-margin 1440"}},
		{name: "kube subnet manager", args: []string{"-kube-subnet-mgr"},
			wantLog: []string{"-kube-subnet-mgr", "Kubernetes subnet manager"}},
		{name: "unreadable TLS file", args: []string{"-etcd-keyfile", "/nonexistent/weft.key",
			"-etcd-certfile", "/nonexistent/weft.crt"},
			wantLog: []string{"/nonexistent/weft."}},
		{name: "unknown backend", args: []string{"-etcd-prefix", "/weft/unknown"},
			wantLog: []string{`unknown backend type \"vxlan-ng\"`, "alloc"}},
		{name: "out of subnets", args: []string{"-etcd-prefix", "/weft/full"},
			wantLog: []string{"out of subnets", "198.19.0.0/16", "1 leases held"}},
		{name: "no usable interface", args: []string{"-etcd-prefix", "/weft/noiface",
			"-iface", "nosuchdev0", "-iface-regex", "^nosuch"},
			wantLog: []string{"no usable interface", "-iface nosuchdev0: no such interface",
				"-iface-regex ^nosuch"}},
		{name: "health port in use", args: []string{"-etcd-prefix", "/weft/busy",
			"-healthz-ip", "127.0.0.1",
			"-healthz-port", fmt.Sprint(busy.Addr().(*net.TCPAddr).Port)},
			wantLog: []string{busy.Addr().String()}},
		{name: "bad public IP", args: []string{"-public-ip", "198.18.0"},
			wantLog: []string{`-public-ip \"198.18.0\"`}},
		{name: "bridge name too long", args: []string{"-bridge", "weft-bridge-name0"},
			wantLog: []string{"-bridge", "weft-bridge-name0"}},
		{name: "hyperd config without a bridge",
			args:    []string{"-hyper-config", "/etc/hyper/config"},
			wantLog: []string{"-hyper-config /etc/hyper/config needs -bridge"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"-etcd-endpoints", etcd.Endpoints[0],
				"-subnet-file", filepath.Join(t.TempDir(), "subnet.env")}, tt.args...)
			if !slices.Contains(tt.args, "-iface") {
				args = append(args, "-iface", "lo")
			}
			p := startWeftd(t, nil, args...)
			if code := p.waitExit(t, 30*time.Second); code != 1 {
				t.Errorf("exit status %d, want 1", code)
			}
			log := p.stderr.String()
			for _, w := range tt.wantLog {
				if !strings.Contains(log, w) {
					t.Errorf("the log does not contain %q:\n%s", w, log)
				}
			}
		})
	}
}

// TestVersionAndUsage checks the options that exit before the daemon starts.
func TestVersionAndUsage(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "version", args: []string{"-version"}, wantErr: "dev"},
		{name: "help", args: []string{"--help"}, wantErr: "Usage: weftd"},
		{name: "unknown flag", args: []string{"-kube-subnet-manager"},
			wantErr: "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(weftdBin, tt.args...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Errorf("weftd %s: %v, want exit status 0", tt.args, err)
			}
			if !strings.Contains(stderr.String(), tt.wantErr) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tt.wantErr)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout %q, want nothing", stdout.String())
			}
		})
	}
}
