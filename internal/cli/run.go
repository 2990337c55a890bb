package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/client"
)

// Exit codes of `run`, as docker run has them.
const (
	exitRunFailed     = 125 // hostnet failed before the command ran
	exitCannotExecute = 126 // the command was found but could not be run
	exitNotFound      = 127 // the command was not found
)

// nsexecCommand is the hidden subcommand `run` re-executes hostnet with to
// start the command inside the namespace.
const nsexecCommand = "__nsexec"

// selfExe is the running hostnet binary.
const selfExe = "/proc/self/exe"

// forwardedSignals are passed on to the command run by `run`.
var forwardedSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2}

// runOptions are the flags of `run`.
type runOptions struct {
	endpoint endpointOptions
	rm       bool
}

func newRunCommand(a *app) *cobra.Command {
	o := &runOptions{}
	cmd := &cobra.Command{
		Use:   "run [OPTIONS] [--] CMD [ARG...]",
		Short: "Run a command in a new network namespace with an endpoint on a network",
		Long: "Create a namespace and an endpoint on a network, attach them, and run CMD inside\n" +
			"the namespace with the standard streams attached. The exit status is CMD's\n" +
			"(125 if hostnet failed, 126 if CMD could not be run, 127 if it was not found).\n" +
			"With --rm the endpoint and the namespace are removed when CMD exits.\n\n" +
			"-p/--publish publishes a port of the endpoint on the host, as docker run does:\n" +
			"  " + publishSyntax + "\n" +
			"PROTO is tcp (the default) or udp; HOSTIP may be IPv6 in brackets ([::1]:8080:80);\n" +
			"ranges (8000-8010:8000-8010) publish each port. CONTAINERPORT alone is published\n" +
			"on the same host port.",
		Args:        minArgs(1),
		Annotations: map[string]string{annotationErrorCode: fmt.Sprint(exitRunFailed)},
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.run(cmd.Context(), o, args)
		},
	}
	f := cmd.Flags()
	f.SetInterspersed(false)
	f.StringVar(&o.endpoint.network, "network", "nat", "network of the endpoint (name or ID)")
	f.StringArrayVar(&o.endpoint.ips, "ip", nil, "static address, IP or IP/PREFIXLEN")
	f.StringVar(&o.endpoint.mac, "mac", "", "MAC address")
	f.StringArrayVar(&o.endpoint.dns, "dns", nil, "DNS server (repeatable)")
	f.StringVar(&o.endpoint.name, "name", "", "name of the namespace and the endpoint")
	f.StringArrayVarP(&o.endpoint.publish, "publish", "p", nil, "publish a port: "+publishSyntax+" (repeatable)")
	f.BoolVar(&o.rm, "rm", false, "remove the endpoint and the namespace when CMD exits")
	return cmd
}

// resolvConfPath returns the resolv.conf hostnet writes for a namespace
// (the extra field ResolvConfPath), or "".
func resolvConfPath(ns *api.Namespace) string {
	raw, ok := ns.Extra["ResolvConfPath"]
	if !ok {
		return ""
	}
	var p string
	if json.Unmarshal(raw, &p) != nil {
		return ""
	}
	return p
}

// nsexecArgs are the arguments hostnet is re-executed with to run argv in
// the network namespace at netnsPath.
func nsexecArgs(netnsPath, resolvConf string, argv []string) []string {
	args := []string{nsexecCommand, "--netns", netnsPath}
	if resolvConf != "" {
		args = append(args, "--resolv-conf", resolvConf)
	}
	args = append(args, "--")
	return append(args, argv...)
}

// exitStatus is the exit code of a finished process: its own, or 128 plus
// the signal that killed it.
func exitStatus(state *os.ProcessState) int {
	if state == nil {
		return exitRunFailed
	}
	if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return state.ExitCode()
}

// signalStatus is the exit code for dying of sig.
func signalStatus(sig os.Signal) int {
	if s, ok := sig.(syscall.Signal); ok {
		return 128 + int(s)
	}
	return 1
}

// runObjects are the objects `run` created, to remove.
type runObjects struct {
	namespace, endpoint string
}

// removeRunObjects deletes the objects, reporting failures on stderr.
func (a *app) removeRunObjects(ctx context.Context, c *client.Client, objs runObjects) {
	if objs.endpoint != "" {
		if err := c.DeleteEndpoint(ctx, objs.endpoint); err != nil && !api.IsNotFound(err) {
			a.report(fmt.Errorf("remove endpoint %s: %w", objs.endpoint, err))
		}
	}
	if objs.namespace != "" {
		if err := c.DeleteNamespace(ctx, objs.namespace); err != nil && !api.IsNotFound(err) {
			a.report(fmt.Errorf("remove namespace %s: %w", objs.namespace, err))
		}
	}
}

// run is `hostnet run`: set up, run the command, pass its status through.
func (a *app) run(ctx context.Context, o *runOptions, argv []string) error {
	fail := func(err error) error { return &ExitError{Code: exitRunFailed, Err: err} }
	doc, err := buildEndpoint(&o.endpoint)
	if err != nil {
		return fail(err)
	}

	// From here on, signals must not kill hostnet before it has cleaned up.
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, forwardedSignals...)
	defer signal.Stop(sigs)

	c := a.client()
	cleanupCtx := context.WithoutCancel(ctx)
	var objs runObjects
	abort := func(err error) error {
		a.removeRunObjects(cleanupCtx, c, objs)
		return fail(err)
	}

	ns, err := c.CreateNamespace(ctx, &api.Namespace{Name: o.endpoint.name, SchemaVersion: api.SchemaVersion{Major: 2, Minor: 0}})
	if err != nil {
		return fail(err)
	}
	objs.namespace = ns.ID
	var ep *api.Endpoint
	err = withRef(ctx, c, kindNetwork, doc.HostComputeNetwork, func(ref string) (err error) {
		doc.HostComputeNetwork = ref
		ep, err = c.CreateEndpoint(ctx, doc)
		return err
	})
	if err != nil {
		return abort(err)
	}
	objs.endpoint = ep.ID
	attached, err := c.Attach(ctx, ns.ID, ep.ID)
	if err != nil {
		return abort(err)
	}
	select {
	case sig := <-sigs:
		a.removeRunObjects(cleanupCtx, c, objs)
		return &ExitError{Code: signalStatus(sig)}
	default:
	}

	path := attached.NetNamespacePath
	if path == "" {
		path = ns.NetNamespacePath
	}
	if path == "" {
		return abort(fmt.Errorf("namespace %s has no NetNamespacePath", ns.ID))
	}
	resolv := resolvConfPath(attached)
	if resolv == "" {
		resolv = resolvConfPath(ns)
	}

	child := exec.Command(selfExe, nsexecArgs(path, resolv, argv)...)
	child.Args[0] = "hostnet"
	child.Stdin, child.Stdout, child.Stderr = a.io.In, a.io.Out, a.io.Err
	// A private mount namespace, so that the resolv.conf bind mount stays
	// the command's own (Go makes / recursively private in it).
	child.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	if err := child.Start(); err != nil {
		return abort(fmt.Errorf("start %s: %w", argv[0], err))
	}
	done := make(chan error, 1)
	go func() { done <- child.Wait() }()
	var waitErr error
wait:
	for {
		select {
		case sig := <-sigs:
			_ = child.Process.Signal(sig)
		case waitErr = <-done:
			break wait
		}
	}
	code := exitStatus(child.ProcessState)
	var exitErr *exec.ExitError
	if waitErr != nil && !errors.As(waitErr, &exitErr) {
		a.report(fmt.Errorf("wait for %s: %w", argv[0], waitErr))
	}
	if o.rm {
		a.removeRunObjects(cleanupCtx, c, objs)
	}
	if code != 0 {
		return &ExitError{Code: code}
	}
	return nil
}
