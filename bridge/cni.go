package bridge

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/weftnet/weft/internal/atomicfile"
	"github.com/weftnet/weft/subnet"
)

// DefaultCNIConfPath is where flannel's Kubernetes manifest installs its conflist.
const DefaultCNIConfPath = "/etc/cni/net.d/10-flannel.conflist"

// cniDefaultBridge is the bridge the CNI bridge plugin uses when its config names none.
const cniDefaultBridge = "cni0"

// CNIConfig is what varies in the conflist weftd writes for flannel's CNI plugin.
type CNIConfig struct {
	// SubnetFile is the subnet.env the plugin reads. It is written into the plugin's
	// config only when it differs from subnet.DefaultEnvFile, which the plugin reads
	// by default. It must be absolute: the plugin runs in the runtime's directory.
	SubnetFile string

	// Bridge is the bridge weftd keeps (--bridge). When set to anything but cni0, the
	// bridge plugin that flannel's plugin delegates to is told to use it.
	Bridge string
}

// The conflist's structure, in the key order flannel's own manifest uses.
type (
	cniConfList struct {
		Name       string      `json:"name"`
		CNIVersion string      `json:"cniVersion"`
		Plugins    []cniPlugin `json:"plugins"`
	}
	cniPlugin struct {
		Type         string          `json:"type"`
		SubnetFile   string          `json:"subnetFile,omitempty"`
		Delegate     *cniDelegate    `json:"delegate,omitempty"`
		Capabilities map[string]bool `json:"capabilities,omitempty"`
	}
	cniDelegate struct {
		Bridge           string `json:"bridge,omitempty"`
		HairpinMode      bool   `json:"hairpinMode"`
		IsDefaultGateway bool   `json:"isDefaultGateway"`
	}
)

// RenderCNIConflist returns the network configuration list that flannel's Kubernetes
// manifest installs as 10-flannel.conflist: network cbr0, CNI version 0.3.1, the flannel
// plugin delegating to the bridge plugin with hairpin mode and the default gateway on,
// then portmap with the portMappings capability. The JSON is indented by two spaces and
// ends in a newline.
func RenderCNIConflist(c CNIConfig) ([]byte, error) {
	flannel := cniPlugin{
		Type:     "flannel",
		Delegate: &cniDelegate{HairpinMode: true, IsDefaultGateway: true},
	}
	if c.SubnetFile != "" && c.SubnetFile != subnet.DefaultEnvFile {
		if !filepath.IsAbs(c.SubnetFile) {
			return nil, fmt.Errorf("subnet file %q for the CNI plugin is not an absolute path",
				c.SubnetFile)
		}
		flannel.SubnetFile = filepath.Clean(c.SubnetFile)
	}
	if c.Bridge != "" && c.Bridge != cniDefaultBridge {
		if err := CheckName(c.Bridge); err != nil {
			return nil, err
		}
		flannel.Delegate.Bridge = c.Bridge
	}

	list := cniConfList{
		Name:       "cbr0",
		CNIVersion: "0.3.1",
		Plugins: []cniPlugin{
			flannel,
			{Type: "portmap", Capabilities: map[string]bool{"portMappings": true}},
		},
	}
	data, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding CNI conflist: %w", err)
	}
	return append(data, '\n'), nil
}

// WriteCNIConflist renders c as [RenderCNIConflist] does and replaces path with it
// atomically, creating the parent directory (0755) when missing. The file is 0644 unless
// it exists with another mode. It reports whether the file changed.
func WriteCNIConflist(path string, c CNIConfig) (bool, error) {
	data, err := RenderCNIConflist(c)
	if err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return false, fmt.Errorf("creating directory for %s: %w", path, err)
	}
	return atomicfile.WriteIfChanged(path, data, 0o644)
}
