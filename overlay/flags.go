package overlay

import (
	"errors"
	"flag"
	"strings"

	"github.com/weftnet/weft/subnet"
)

// EnvPrefix starts the environment variable of every weftd option, as flanneld's:
// FLANNELD_ and the option's name in upper case with '-' turned into '_'.
const EnvPrefix = "FLANNELD_"

// secretFlags are the options whose values never appear in a message.
var secretFlags = map[string]bool{"etcd-password": true}

// EnvName returns the environment variable of the option called flagName, for example
// FLANNELD_ETCD_ENDPOINTS for etcd-endpoints.
func EnvName(flagName string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// EnvNote says what ApplyEnv did with one variable. Value is "<redacted>" for the
// password; Err is set when the value was ignored.
type EnvNote struct {
	Var, Value string
	Err        error
}

// ApplyEnv sets each option of fs that the command line did not give from its
// FLANNELD_* variable, as weftd does: only when the variable is set and not empty, the
// whole value as one entry for a repeatable option. A value the option refuses is
// skipped. only, when not nil, limits this to the options it accepts (a tool whose
// other options are not weftd's). It returns a note for every variable it looked at and
// found set, in the order of fs's options; lookup is os.LookupEnv outside tests.
func ApplyEnv(fs *flag.FlagSet, lookup func(string) (string, bool),
	only func(name string) bool) []EnvNote {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })

	var notes []EnvNote
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || f.Name == "version" || (only != nil && !only(f.Name)) {
			return
		}
		name := EnvName(f.Name)
		v, ok := lookup(name)
		if !ok || v == "" {
			return
		}
		n := EnvNote{Var: name, Value: v}
		if secretFlags[f.Name] {
			n.Value = "<redacted>"
		}
		if err := fs.Set(f.Name, v); err != nil {
			n.Err = err
			if secretFlags[f.Name] {
				n.Err = errInvalidSecret
			}
		}
		notes = append(notes, n)
	})
	return notes
}

// errInvalidSecret replaces an error whose text could quote the password.
var errInvalidSecret = errors.New("invalid value")

// EtcdFlags declares weftd's etcd options on fs, with flanneld's names and defaults:
// -etcd-endpoints, -etcd-prefix, -etcd-keyfile, -etcd-certfile, -etcd-cafile,
// -etcd-username and -etcd-password. The returned function gives their values once fs
// is parsed (and ApplyEnv has run).
func EtcdFlags(fs *flag.FlagSet) func() subnet.EtcdOptions {
	var endpoints string
	var o subnet.EtcdOptions
	fs.StringVar(&endpoints, "etcd-endpoints", subnet.DefaultEtcdEndpoints,
		"etcd client `URLs`, separated by commas")
	fs.StringVar(&o.Prefix, "etcd-prefix", subnet.DefaultPrefix,
		"etcd `key` under which the network config and the leases live")
	fs.StringVar(&o.KeyFile, "etcd-keyfile", "",
		"PEM client key `file` for etcd; TLS needs it together with -etcd-certfile")
	fs.StringVar(&o.CertFile, "etcd-certfile", "",
		"PEM client certificate `file` for etcd; TLS needs it together with -etcd-keyfile")
	fs.StringVar(&o.CAFile, "etcd-cafile", "",
		"PEM CA bundle `file` that etcd's server certificate must chain to (TLS only)")
	fs.StringVar(&o.Username, "etcd-username", "", "etcd user `name`")
	fs.StringVar(&o.Password, "etcd-password", "", "etcd `password` (never shown)")
	return func() subnet.EtcdOptions {
		o.Endpoints = subnet.SplitEndpoints(endpoints)
		return o
	}
}
