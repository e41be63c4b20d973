package overlay

import (
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
)

func lookupIn(kv ...string) func(string) (string, bool) {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

func TestEtcdFlagsAndEnv(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		env       []string
		only      func(string) bool
		check     func(t *testing.T, fs *flag.FlagSet, notes []EnvNote)
		wantNotes []string
	}{{
		name: "defaults are flanneld's",
		check: func(t *testing.T, fs *flag.FlagSet, _ []EnvNote) {
			if v := fs.Lookup("etcd-endpoints").DefValue; v !=
				"http://127.0.0.1:4001,http://127.0.0.1:2379" {
				t.Errorf("default endpoints %q", v)
			}
			if v := fs.Lookup("etcd-prefix").DefValue; v != "/coreos.com/network" {
				t.Errorf("default prefix %q", v)
			}
		},
	}, {
		name: "environment fills what the command line leaves",
		args: []string{"-etcd-prefix", "/cli"},
		env: []string{"FLANNELD_ETCD_PREFIX", "/env", "FLANNELD_ETCD_ENDPOINTS",
			"http://198.18.0.254:2379, http://198.18.0.253:2379", "FLANNELD_ETCD_USERNAME", ""},
		wantNotes: []string{"FLANNELD_ETCD_ENDPOINTS=http://198.18.0.254:2379, " +
			"http://198.18.0.253:2379"},
	}, {
		name:      "password redacted",
		env:       []string{"FLANNELD_ETCD_PASSWORD", "s3cr3t"},
		wantNotes: []string{"FLANNELD_ETCD_PASSWORD=<redacted>"},
	}, {
		name:      "only the options chosen",
		env:       []string{"FLANNELD_ETCD_PREFIX", "/env", "FLANNELD_HEALTHZ_PORT", "99"},
		only:      func(name string) bool { return name == "healthz-port" },
		wantNotes: []string{"FLANNELD_HEALTHZ_PORT=99"},
	}, {
		name:      "other options of the set too",
		env:       []string{"FLANNELD_HEALTHZ_PORT", "eighty", "FLANNELD_VERSION", "true"},
		wantNotes: []string{`FLANNELD_HEALTHZ_PORT=eighty: parse error`},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("x", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			etcd := EtcdFlags(fs)
			fs.Int("healthz-port", 0, "")
			fs.Bool("version", false, "")
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			notes := ApplyEnv(fs, lookupIn(tt.env...), tt.only)
			var got []string
			for _, n := range notes {
				s := n.Var + "=" + n.Value
				if n.Err != nil {
					s += ": " + n.Err.Error()
				}
				got = append(got, s)
			}
			if len(got) != len(tt.wantNotes) {
				t.Errorf("notes %q, want %q", got, tt.wantNotes)
			}
			for i := range min(len(got), len(tt.wantNotes)) {
				if !strings.HasPrefix(got[i], tt.wantNotes[i]) {
					t.Errorf("note %q, want one starting %q", got[i], tt.wantNotes[i])
				}
			}
			o := etcd()
			if tt.name == "environment fills what the command line leaves" {
				if o.Prefix != "/cli" || !slices.Equal(o.Endpoints,
					[]string{"http://198.18.0.254:2379", "http://198.18.0.253:2379"}) {
					t.Errorf("options %v", o)
				}
			}
			if tt.name == "password redacted" && o.Password != "s3cr3t" {
				t.Errorf("password not applied")
			}
			if tt.check != nil {
				tt.check(t, fs, notes)
			}
		})
	}
}

// FuzzApplyEnv sets every etcd option from the environment with arbitrary values, and
// some from the command line: nothing panics, the command line always wins, and the
// password shows in no note.
func FuzzApplyEnv(f *testing.F) {
	f.Add("http://a:2379,,b", "/p", "pw", "-etcd-prefix\x00/cli")
	f.Add("", "", "hunter2", "-etcd-password\x00other")
	f.Fuzz(func(t *testing.T, endpoints, prefix, password, cmdline string) {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		etcd := EtcdFlags(fs)
		var args []string
		if cmdline != "" {
			args = strings.Split(cmdline, "\x00")
		}
		if fs.Parse(args) != nil {
			return
		}
		given := map[string]string{}
		fs.Visit(func(fl *flag.Flag) { given[fl.Name] = fl.Value.String() })
		notes := ApplyEnv(fs, lookupIn("FLANNELD_ETCD_ENDPOINTS", endpoints,
			"FLANNELD_ETCD_PREFIX", prefix, "FLANNELD_ETCD_PASSWORD", password), nil)
		for name, v := range given {
			if got := fs.Lookup(name).Value.String(); got != v {
				t.Fatalf("-%s %q became %q", name, v, got)
			}
		}
		if len(password) > 3 {
			if s := fmt.Sprint(notes); strings.Contains(s, password) &&
				!strings.Contains(endpoints+prefix+cmdline, password) {
				t.Fatalf("the password is in the notes: %s", s)
			}
		}
		_ = etcd()
	})
}
