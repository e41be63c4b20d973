package netlab

import (
	"os"
	"os/exec"
	"syscall"
)

func nsInode(path string, ino *uint64) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	*ino = fi.Sys().(*syscall.Stat_t).Ino
	return nil
}

// sleeper is a child process that lives until its stdin closes or it is killed.
func sleeper() *exec.Cmd {
	cmd := exec.Command("/bin/sh", "-c", "read x")
	cmd.StdinPipe()
	return cmd
}
