package dataplane

import (
	"fmt"
	"os/exec"
)

// loadModule loads a kernel module (`modprobe NAME`).
func loadModule(name string) error {
	if out, err := exec.Command("modprobe", name).CombinedOutput(); err != nil {
		return fmt.Errorf("modprobe %s: %w (%s)", name, err, out)
	}
	return nil
}
