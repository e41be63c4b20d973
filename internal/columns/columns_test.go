package columns

import (
	"strings"
	"testing"
)

func TestWrite(t *testing.T) {
	var b strings.Builder
	Write(&b, [][]string{
		{"PATH", "STREAMS", "Gbit/s"},
		{"vxlan", "1", "14.50"},
		{"host-gw", "4", "9.3"},
		{"short"},
	}, 1)
	want := "PATH     STREAMS  Gbit/s\n" +
		"vxlan          1   14.50\n" +
		"host-gw        4     9.3\n" +
		"short\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}
