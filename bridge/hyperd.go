package bridge

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"unicode"

	"github.com/weftnet/weft/internal/atomicfile"
)

// DefaultHyperdConfigPath is where hyperd reads its configuration unless started with
// --config.
const DefaultHyperdConfigPath = "/etc/hyper/config"

// The section hyperd reads all of its keys from, except those of [Log]. Keys before the
// first section header belong to it too.
const hyperdDefaultSection = "DEFAULT"

// HyperdConfig is what weftd keeps in hyperd's configuration file.
type HyperdConfig struct {
	// Bridge is the bridge hyperd attaches its VMs' taps to.
	Bridge string

	// BridgeIP is the bridge's address with the lease's prefix length, the value of
	// FLANNEL_SUBNET (10.5.52.1/24). hyperd hands out the rest of that subnet to pods.
	BridgeIP netip.Prefix

	// DisableIptables, when true, writes DisableIptables=true so that hyperd adds no
	// masquerade rule of its own: weftd's masquerades pod traffic leaving the overlay
	// and exempts traffic inside it, which hyperd's rule does not. When false, the key
	// is left as it is found, because without weftd's rules hyperd's may be the only
	// masquerade the host has.
	DisableIptables bool
}

// bridgeBOM is the UTF-8 byte order mark, which hyperd's parser skips at the start of
// the file.
const bridgeBOM = "\ufeff"

// iniLine is one line of an INI file as hyperd's parser (goconfig) sees it.
type iniLine struct {
	// text is the line as found, without its '\n' (and without a leading byte order
	// mark on the first line).
	text string
	// section is the section the line belongs to, hyperdDefaultSection before the
	// first header.
	section string
	// key is the key of a key=value line, "" on any other line; valueAt is the offset
	// in text where the value starts.
	key     string
	valueAt int
	header  bool
}

// parseINI splits data into lines the way hyperd's parser reads them: lines are
// trimmed; blank lines and those starting with '#' or ';' are comments; a line that
// starts with '[' and ends with ']' opens a section; any other line is a key ending at
// the first '=' or ':' (a key may be quoted with '"' or '`'), and a line without one is
// an error naming its number.
func parseINI(data []byte) (bom bool, lines []iniLine, err error) {
	s := string(data)
	if strings.HasPrefix(s, bridgeBOM) {
		bom = true
		s = s[len(bridgeBOM):]
	}
	raw := strings.Split(s, "\n")
	if raw[len(raw)-1] == "" {
		raw = raw[:len(raw)-1]
	}

	section := hyperdDefaultSection
	for i, text := range raw {
		l := iniLine{text: text, section: section}
		t := strings.TrimSpace(text)
		switch {
		case t == "" || t[0] == '#' || t[0] == ';':
		case t[0] == '[' && t[len(t)-1] == ']':
			name := strings.TrimSpace(t[1 : len(t)-1])
			if name == "" {
				return false, nil, fmt.Errorf("line %d: section header %q has no name", i+1, t)
			}
			section = name
			l.section, l.header = name, true
		default:
			key, sep, ok := splitINIKey(t)
			if !ok {
				return false, nil, fmt.Errorf("line %d: %q is not a comment, a [section] "+
					"or a key=value line", i+1, t)
			}
			l.key = key
			lead := len(text) - len(strings.TrimLeftFunc(text, unicode.IsSpace))
			l.valueAt = lead + sep + 1
			for l.valueAt < len(text) && strings.IndexByte(" \t", text[l.valueAt]) >= 0 {
				l.valueAt++
			}
		}
		lines = append(lines, l)
	}
	return bom, lines, nil
}

// splitINIKey returns the key of the trimmed line t and the offset of the separator
// that ends it.
func splitINIKey(t string) (key string, sep int, ok bool) {
	quote := ""
	switch {
	case strings.HasPrefix(t, `"""`) && len(t) >= 6:
		quote = `"""`
	case t[0] == '"' || t[0] == '`':
		quote = t[:1]
	}
	if quote != "" {
		end := strings.Index(t[len(quote):], quote)
		if end < 0 {
			return "", 0, false
		}
		end += len(quote)
		i := strings.IndexAny(t[end:], "=:")
		if i <= 0 {
			return "", 0, false
		}
		return t[len(quote):end], end + i, true
	}
	i := strings.IndexAny(t, "=:")
	if i <= 0 {
		return "", 0, false
	}
	return strings.TrimSpace(t[:i]), i, true
}

// UpdateHyperdConfig returns the hyperd configuration old with Bridge, BridgeIP and, when
// c.DisableIptables is set, DisableIptables=true. Every other line is kept as it is:
// other keys, comments, and sections such as [Log]. A key that appears more than once
// gets the value on each of its lines; a missing key is added after the last key that
// precedes the first section, where hyperd looks for it. old may be empty. An old that
// hyperd could not parse is an error naming the line.
func UpdateHyperdConfig(old []byte, c HyperdConfig) ([]byte, error) {
	if err := CheckName(c.Bridge); err != nil {
		return nil, err
	}
	if !c.BridgeIP.IsValid() || !c.BridgeIP.Addr().Is4() {
		return nil, fmt.Errorf("hyperd BridgeIP %s is not an IPv4 address with a prefix length",
			c.BridgeIP)
	}
	bom, lines, err := parseINI(old)
	if err != nil {
		return nil, err
	}

	want := []struct{ key, value string }{
		{"Bridge", c.Bridge},
		{"BridgeIP", c.BridgeIP.String()},
	}
	if c.DisableIptables {
		want = append(want, struct{ key, value string }{"DisableIptables", "true"})
	}

	insertAt := insertionPoint(lines)

	var added []string
	for _, w := range want {
		found := false
		for i, l := range lines {
			if l.key != w.key || l.section != hyperdDefaultSection {
				continue
			}
			found = true
			lines[i].text = l.text[:l.valueAt] + w.value + crOf(l.text)
		}
		if !found {
			added = append(added, w.key+"="+w.value)
		}
	}

	eol := "\n"
	if len(lines) > 0 && crOf(lines[0].text) != "" {
		eol = "\r\n"
	}
	var b bytes.Buffer
	if bom {
		b.WriteString(bridgeBOM)
	}
	for i, l := range lines {
		if i == insertAt {
			writeLines(&b, added, eol)
		}
		b.WriteString(l.text)
		b.WriteByte('\n')
	}
	if insertAt == len(lines) {
		writeLines(&b, added, eol)
	}
	return b.Bytes(), nil
}

// insertionPoint returns the index of the line before which keys missing from the
// default section go: after the last key that precedes the first section header; when
// there is none, before that header and the comment lines directly above it; at the end
// of a file without sections.
func insertionPoint(lines []iniLine) int {
	header := len(lines)
	lastKey := -1
	for i, l := range lines {
		if l.header {
			header = i
			break
		}
		if l.key != "" {
			lastKey = i
		}
	}
	if lastKey >= 0 {
		return lastKey + 1
	}
	at := header
	for at > 0 && at < len(lines) && isCommentLine(lines[at-1].text) {
		at--
	}
	return at
}

func isCommentLine(text string) bool {
	t := strings.TrimSpace(text)
	return t != "" && (t[0] == '#' || t[0] == ';')
}

// crOf returns "\r" when text ends in one, so that a rewritten line keeps a CRLF ending.
func crOf(text string) string {
	if strings.HasSuffix(text, "\r") {
		return "\r"
	}
	return ""
}

func writeLines(b *bytes.Buffer, lines []string, eol string) {
	for _, l := range lines {
		b.WriteString(l + eol)
	}
}

// WriteHyperdConfig updates the hyperd configuration at path as [UpdateHyperdConfig]
// does and replaces the file atomically when, and only when, its content changes. A
// missing file is created (0644, with its directory). It reports whether the file
// changed: hyperd reads it only when it starts, so a running hyperd must be restarted
// to use the new bridge address. On error the file is left as it was.
func WriteHyperdConfig(path string, c HyperdConfig) (bool, error) {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("reading hyperd config %s: %w", path, err)
	}
	data, err := UpdateHyperdConfig(old, c)
	if err != nil {
		return false, fmt.Errorf("hyperd config %s: %w", path, err)
	}
	if bytes.Equal(old, data) {
		return false, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return false, fmt.Errorf("creating directory for %s: %w", path, err)
	}
	if err := atomicfile.Write(path, data, 0o644); err != nil {
		return false, err
	}
	return true, nil
}
