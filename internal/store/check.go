package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// checkEnv makes any program that imports this package check the bbolt
// file it names and exit, instead of running: the way checkFile runs the
// check in a process of its own.
const checkEnv = "HOSTNET_STORE_CHECK"

// Exit codes of the check process.
const (
	checkSound   = 0
	checkDamaged = 3
)

func init() {
	if path := os.Getenv(checkEnv); path != "" {
		os.Exit(checkMain(path))
	}
}

func checkMain(path string) int {
	db, err := openChecked(path, true)
	if err != nil {
		var damaged *DamagedError
		if errors.As(err, &damaged) {
			err = damaged.Err
		}
		fmt.Fprint(os.Stderr, err)
		return checkDamaged
	}
	db.Close()
	return checkSound
}

// checkFile checks the bbolt file at path (see openChecked) in a process
// of its own, on a copy: on some damage bbolt panics in a goroutine of
// its own while opening, which no recover can catch, or faults on its
// memory map, and leaves its file lock held.
func checkFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	tmp := path + ".check"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("check %s: %w", path, err)
	}
	defer os.Remove(tmp)
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("check %s: %w", path, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, self)
	// GORACE: a race-built binary otherwise sleeps a second at exit.
	cmd.Env = []string{checkEnv + "=" + tmp, "GORACE=atexit_sleep_ms=0"}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &exit) && exit.ExitCode() == checkDamaged:
		return &DamagedError{Path: path, Err: errors.New(strings.TrimSpace(stderr.String()))}
	case errors.As(err, &exit):
		// A crash of the reader: the first line of its panic says why.
		first, _, _ := strings.Cut(strings.TrimSpace(stderr.String()), "\n")
		return &DamagedError{Path: path, Err: fmt.Errorf("reading it crashed: %s", first)}
	}
	return fmt.Errorf("check %s: %w", path, err)
}
