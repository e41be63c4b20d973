package netlab

import (
	"bytes"
	"errors"
	"testing"
)

func TestEchoRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		echo Echo
	}{
		{name: "request", echo: Echo{ID: 0x1234, Seq: 1, Data: []byte("weft-lab")}},
		{name: "reply", echo: Echo{Reply: true, ID: 0xffff, Seq: 0xfffe, Data: []byte{1, 2, 3}}},
		{name: "odd length", echo: Echo{ID: 7, Seq: 9, Data: []byte{0xff}}},
		{name: "no data", echo: Echo{ID: 1, Seq: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.echo.Marshal()
			if checksum(b) != 0 {
				t.Fatalf("checksum over marshalled message = %#x, want 0", checksum(b))
			}
			got, err := ParseEcho(b)
			if err != nil {
				t.Fatalf("ParseEcho: %v", err)
			}
			if got.Reply != tt.echo.Reply || got.ID != tt.echo.ID || got.Seq != tt.echo.Seq ||
				!bytes.Equal(got.Data, tt.echo.Data) {
				t.Errorf("ParseEcho(Marshal(%+v)) = %+v", tt.echo, got)
			}
		})
	}
}

func TestEchoMarshalBytes(t *testing.T) {
	// An echo request id 1 seq 1 with no data: type 8, code 0, checksum 0xf7fd.
	got := Echo{ID: 1, Seq: 1}.Marshal()
	want := []byte{8, 0, 0xf7, 0xfd, 0, 1, 0, 1}
	if !bytes.Equal(got, want) {
		t.Errorf("Marshal = % x, want % x", got, want)
	}
}

func TestParseEchoErrors(t *testing.T) {
	good := Echo{Reply: true, ID: 5, Seq: 6, Data: []byte("x")}.Marshal()
	corrupt := bytes.Clone(good)
	corrupt[len(corrupt)-1] ^= 0xff
	unreachable := bytes.Clone(good)
	unreachable[0] = 3

	tests := []struct {
		name    string
		msg     []byte
		notEcho bool
	}{
		{name: "empty", msg: nil},
		{name: "short", msg: good[:7]},
		{name: "bad checksum", msg: corrupt},
		{name: "other type", msg: unreachable, notEcho: true},
		{name: "nonzero code", msg: append([]byte{0, 1}, good[2:]...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseEcho(tt.msg)
			if err == nil {
				t.Fatal("ParseEcho succeeded, want an error")
			}
			if errors.Is(err, errNotEcho) != tt.notEcho {
				t.Errorf("ParseEcho error %q: errors.Is(errNotEcho) = %t, want %t",
					err, !tt.notEcho, tt.notEcho)
			}
		})
	}
}

func FuzzParseEcho(f *testing.F) {
	f.Add(Echo{ID: 1, Seq: 2, Data: []byte("seed")}.Marshal())
	f.Add(Echo{Reply: true, ID: 3, Seq: 4}.Marshal())
	f.Add([]byte{3, 1, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ParseEcho(b)
		if err != nil {
			return
		}
		again, err := ParseEcho(e.Marshal())
		if err != nil {
			t.Fatalf("re-parsing a marshalled echo: %v", err)
		}
		if again.Reply != e.Reply || again.ID != e.ID || again.Seq != e.Seq ||
			!bytes.Equal(again.Data, e.Data) {
			t.Fatalf("round trip changed %+v into %+v", e, again)
		}
	})
}

func TestCheckName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{name: "weft-h1-p2", ok: true},
		{name: "a.b_c", ok: true},
		{name: "", ok: false},
		{name: ".hidden", ok: false},
		{name: "-flag", ok: false},
		{name: "with/slash", ok: false},
		{name: "with space", ok: false},
		{name: string(bytes.Repeat([]byte("x"), 65)), ok: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckName(tt.name)
			if (err == nil) != tt.ok {
				t.Errorf("CheckName(%q) = %v, want ok=%t", tt.name, err, tt.ok)
			}
		})
	}
}
