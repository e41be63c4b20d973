package netlab

import "fmt"

// CheckName returns an error unless name can name a namespace: 1 to 64 letters, digits,
// '-', '_' or '.', not starting with '.' or '-'.
func CheckName(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("namespace name %q: want 1 to 64 characters", name)
	}
	if name[0] == '.' || name[0] == '-' {
		return fmt.Errorf("namespace name %q: must not start with %q", name, name[0])
	}
	for _, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '_' || c == '.'
		if !ok {
			return fmt.Errorf("namespace name %q: character %q is not allowed", name, c)
		}
	}
	return nil
}
