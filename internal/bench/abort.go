package bench

import (
	"os"
	"os/exec"
	"sync"
	"time"
)

// scratch is what the running benchmarks made that outlives them if the
// process is interrupted: their directories (holding namespaces as bind
// mounts) and the daemons and drivers they started. Abort removes it.
var scratch struct {
	sync.Mutex
	dirs []string
	cmds []*exec.Cmd
}

// newBenchDir makes a scratch directory that Abort removes; its owner
// removes it with removeBenchDir.
func newBenchDir(prefix string) (string, error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", err
	}
	scratch.Lock()
	scratch.dirs = append(scratch.dirs, dir)
	scratch.Unlock()
	return dir, nil
}

// track makes Abort kill c, a started process.
func track(c *exec.Cmd) {
	scratch.Lock()
	scratch.cmds = append(scratch.cmds, c)
	scratch.Unlock()
}

// Abort, for an interrupted run, kills the processes the benchmarks
// started and removes their directories with the namespaces in them (and
// so what those namespaces held). Best effort: the benchmark running at the
// time is not stopped, so the caller exits right after.
func Abort() {
	scratch.Lock()
	defer scratch.Unlock()
	for _, c := range scratch.cmds {
		_ = c.Process.Kill() // an exited one answers "already finished"
	}
	time.Sleep(200 * time.Millisecond) // the killed let go of their namespaces
	for _, dir := range scratch.dirs {
		removeBenchDir(dir)
	}
}
