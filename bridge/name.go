package bridge

import "fmt"

// MaxNameLen is the longest network device name the kernel accepts: IFNAMSIZ less the
// terminating NUL.
const MaxNameLen = 15

// CheckName returns an error naming name unless the kernel would create a device under
// exactly that name. Beyond the kernel's own rules (1 to 15 bytes, not "." or "..", no
// '/', ':', NUL or white space) it refuses '%', which would make the kernel pick a name
// from a pattern instead.
func CheckName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("bridge name is empty")
	case len(name) > MaxNameLen:
		return fmt.Errorf("bridge name %q is %d bytes long; the kernel allows at most %d",
			name, len(name), MaxNameLen)
	case name == "." || name == "..":
		return fmt.Errorf("bridge name %q is not a valid device name", name)
	}
	for i := 0; i < len(name); i++ {
		if badNameByte(name[i]) {
			return fmt.Errorf("bridge name %q contains byte %q, which a device name cannot hold",
				name, name[i])
		}
	}
	return nil
}

// badNameByte reports whether the kernel's dev_valid_name refuses b, or, for '%', turns
// the name into a pattern. The kernel's isspace counts 0xa0 as white space too.
func badNameByte(b byte) bool {
	switch b {
	case '/', ':', '%', 0, ' ', '\t', '\n', '\v', '\f', '\r', 0xa0:
		return true
	}
	return false
}
