package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// newNsexecCommand builds the hidden `__nsexec` that `run` re-executes
// hostnet with, in a private mount namespace: it enters the network
// namespace and replaces itself with the command, as `ip netns exec` does.
func newNsexecCommand(a *app) *cobra.Command {
	var netnsPath, resolvConf string
	cmd := &cobra.Command{
		Use:         nsexecCommand + " --netns PATH [--resolv-conf FILE] -- CMD [ARG...]",
		Short:       "Run a command in a network namespace (used by run)",
		Hidden:      true,
		Args:        minArgs(1),
		Annotations: map[string]string{annotationErrorCode: fmt.Sprint(exitRunFailed)},
		RunE: func(cmd *cobra.Command, args []string) error {
			return nsexec(a.io.Err, netnsPath, resolvConf, args)
		},
	}
	f := cmd.Flags()
	f.SetInterspersed(false)
	f.StringVar(&netnsPath, "netns", "", "network namespace to enter")
	f.StringVar(&resolvConf, "resolv-conf", "", "file to bind-mount on /etc/resolv.conf")
	return cmd
}

// execFailureCode maps a failed exec onto docker's exit codes.
func execFailureCode(err error) int {
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ENOTDIR) {
		return exitNotFound
	}
	return exitCannotExecute
}

// privateMountNamespace reports whether this process has a mount namespace
// of its own (not its parent's), so that mounts made here stay private.
func privateMountNamespace() bool {
	self, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return false
	}
	parent, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", os.Getppid()))
	return err == nil && parent != self
}

// nsexec enters the network namespace at netnsPath and executes argv there.
// It returns only on failure.
func nsexec(stderr io.Writer, netnsPath, resolvConf string, argv []string) error {
	fail := func(code int, err error) error { return &ExitError{Code: code, Err: err} }
	if netnsPath == "" {
		return fail(exitRunFailed, errors.New("--netns is required"))
	}
	private := privateMountNamespace()
	if resolvConf != "" {
		if _, err := os.Stat(resolvConf); err == nil {
			if !private {
				fmt.Fprintf(stderr, "warning: not in a private mount namespace: %s is not mounted on /etc/resolv.conf\n", resolvConf)
			} else if err := unix.Mount(resolvConf, "/etc/resolv.conf", "", unix.MS_BIND, ""); err != nil {
				fmt.Fprintf(stderr, "warning: bind-mount %s on /etc/resolv.conf: %v\n", resolvConf, err)
			}
		}
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return fail(execFailureCode(err), err)
	}

	// Setns changes the calling thread only: stay on it until exec, which
	// then starts the command from this thread, inside the namespace.
	runtime.LockOSThread()
	f, err := os.Open(netnsPath)
	if err != nil {
		return fail(exitRunFailed, fmt.Errorf("open network namespace: %w", err))
	}
	err = unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
	f.Close()
	if err != nil {
		return fail(exitRunFailed, fmt.Errorf("enter network namespace %s: %w", netnsPath, err))
	}
	if private {
		mountSysfs()
	}
	err = syscall.Exec(path, argv, os.Environ())
	return fail(execFailureCode(err), fmt.Errorf("exec %s: %w", path, err))
}

// mountSysfs mounts a sysfs of the current network namespace on /sys, so
// that /sys/class/net shows the namespace's devices, as `ip netns exec`
// does. It is mounted over the old one, so a failure leaves /sys as it was.
func mountSysfs() {
	var flags uintptr
	var st unix.Statfs_t
	if unix.Statfs("/sys", &st) == nil && st.Flags&unix.ST_RDONLY != 0 {
		flags |= unix.MS_RDONLY
	}
	_ = unix.Mount("hostnet", "/sys", "sysfs", flags, "")
}
