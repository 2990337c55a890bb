// Package cli implements the hostnet command line: docker-network-like verbs
// over hostnetd's API, `apply -f` for HCN JSON documents, and `run`, which
// starts a command inside a fresh network namespace.
//
// Commands are built by NewRootCommand from the standard streams and a
// client factory, so that they can be run in tests against a fake daemon.
package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"text/template"

	"github.com/spf13/cobra"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/client"
)

// IO holds the standard streams of a command.
type IO struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer
}

// ClientFactory returns a client of the daemon listening on socket;
// client.New is one.
type ClientFactory func(socket string) *client.Client

// SocketEnv names the environment variable that overrides the default socket.
const SocketEnv = "HOSTNET_SOCKET"

// annotationErrorCode on a command sets the exit code of its failures
// (run fails with 125, like docker run).
const annotationErrorCode = "hostnet.exit-code-on-error"

// app is the state shared by the commands of one invocation.
type app struct {
	io        IO
	newClient ClientFactory
	socket    string
	output    string // -o/--output
	format    string // --format
	// Settled by resolveOutput: the output mode ("" for the command's
	// default), or the --format template.
	mode      string
	tmpl      *template.Template
	tmplTable bool
	tmplText  string
}

func (a *app) client() *client.Client { return a.newClient(a.socket) }

// ExitError ends hostnet with Code. Err, when set, is reported on stderr
// first; when nil, the failure has already been reported.
type ExitError struct {
	Code int
	Err  error
}

// Error returns the message of Err, or the exit status.
func (e *ExitError) Error() string {
	if e.Err != nil {
		return e.Err.Error()
	}
	return fmt.Sprintf("exit status %d", e.Code)
}

// Unwrap returns Err.
func (e *ExitError) Unwrap() error { return e.Err }

// usageError is a bad command line, reported with a pointer to --help.
type usageError struct {
	cmd *cobra.Command
	err error
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// ExitCode maps the error of a command onto hostnet's exit status: 0 for
// nil, the code of an *ExitError, else 1.
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	var e *ExitError
	if errors.As(err, &e) {
		return e.Code
	}
	return 1
}

// ErrorMessage is how err is reported on stderr: the client's own message
// when the daemon cannot be reached, else "Error: " and the message (a
// daemon error as the daemon worded it). It is empty for an *ExitError that
// was already reported.
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	var e *ExitError
	if errors.As(err, &e) && e.Err == nil {
		return ""
	}
	var u *client.UnreachableError
	if errors.As(err, &u) {
		return u.Error()
	}
	msg := "Error: " + err.Error()
	var ue *usageError
	if errors.As(err, &ue) && ue.cmd != nil {
		msg += fmt.Sprintf("\nSee '%s --help'.", ue.cmd.CommandPath())
	}
	return msg
}

// report writes err's message, if any, on w.
func report(w io.Writer, err error) {
	if msg := ErrorMessage(err); msg != "" {
		fmt.Fprintln(w, msg)
	}
}

// report writes err on stderr: as a JSON document under -o json, else
// as ErrorMessage words it.
func (a *app) report(err error) {
	if ErrorMessage(err) == "" {
		return
	}
	if a.wantsJSONErrors() {
		_ = writeJSON(a.io.Err, errorDocument(err, ExitCode(err)))
		return
	}
	report(a.io.Err, err)
}

// daemonErrorCode is the HNS error code the daemon answered err with.
func daemonErrorCode(err error) (uint32, bool) {
	var e *api.Error
	if errors.As(err, &e) {
		return uint32(e.Code), true
	}
	return 0, false
}

// Run runs hostnet with args (without the program name) and returns its
// exit status.
func Run(args []string, streams IO, newClient ClientFactory) int {
	return RunContext(context.Background(), args, streams, newClient)
}

// RunContext is Run with a context for the daemon calls.
func RunContext(ctx context.Context, args []string, streams IO, newClient ClientFactory) int {
	root, a := newRoot(streams, newClient)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	code := ExitCode(err)
	var e *ExitError
	if !errors.As(err, &e) && cmd != nil {
		if c, err := strconv.Atoi(cmd.Annotations[annotationErrorCode]); err == nil {
			code = c
		}
	}
	if a.wantsJSONErrors() && ErrorMessage(err) != "" {
		_ = writeJSON(a.io.Err, errorDocument(err, code))
	} else {
		report(a.io.Err, err)
	}
	return code
}

// NewRootCommand builds the hostnet command tree writing to streams and
// talking to the daemon through clients made by newClient.
func NewRootCommand(streams IO, newClient ClientFactory) *cobra.Command {
	root, _ := newRoot(streams, newClient)
	return root
}

func newRoot(streams IO, newClient ClientFactory) (*cobra.Command, *app) {
	if streams.In == nil {
		streams.In = strings.NewReader("")
	}
	if streams.Out == nil {
		streams.Out = io.Discard
	}
	if streams.Err == nil {
		streams.Err = io.Discard
	}
	if newClient == nil {
		newClient = client.New
	}
	a := &app{io: streams, newClient: newClient}

	root := &cobra.Command{
		Use:   "hostnet",
		Short: "Manage hostnet networks, endpoints and namespaces",
		Long: "hostnet manages the virtual networks, endpoints and network namespaces of hostnetd,\n" +
			"a host networking service for Linux containers that speaks the HNS v2 (HCN) schema.\n\n" +
			"hostnetd's socket is for root, and for the members of the group hostnetd was started\n" +
			"with (--socket-group); run hostnet with sudo otherwise.",
		Version:       clientVersion().String(),
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if err := a.resolveOutput(); err != nil {
				return &usageError{cmd: cmd, err: err}
			}
			return nil
		},
	}
	root.SetVersionTemplate("hostnet version {{.Version}}\n")
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.Err)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return &usageError{cmd: c, err: err} })

	socket := os.Getenv(SocketEnv)
	if socket == "" {
		socket = client.DefaultSocket
	}
	root.PersistentFlags().StringVar(&a.socket, "socket", socket, "hostnetd's unix socket (env "+SocketEnv+")")
	root.PersistentFlags().StringVar(&a.output, "output", "", outputUsage)
	root.PersistentFlags().StringVar(&a.format, "format", "", formatUsage)
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(outputModes, cobra.ShellCompDirectiveNoFileComp))

	root.AddCommand(
		newVersionCommand(a),
		newNetworkCommand(a),
		newEndpointCommand(a),
		newNamespaceCommand(a),
		newRouteCommand(a),
		newApplyCommand(a),
		newRunCommand(a),
		newNsexecCommand(a),
		newDoctorCommand(a),
		newEventsCommand(a),
		newGraphCommand(a),
	)
	// The help and completion commands are made at Execute; make them now,
	// so that the tree (man pages, completion) is whole from the start.
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	root.InitDefaultVersionFlag()
	if f := root.Flags().Lookup("version"); f != nil {
		f.Usage = "print hostnet's version and build, and exit ('hostnet version' asks the daemon too)"
	}
	return root, a
}

// newGroupCommand builds a command that only holds subcommands: alone it
// prints its help, with an unknown subcommand it fails.
func newGroupCommand(use, short string, aliases ...string) *cobra.Command {
	return &cobra.Command{
		Use:     use,
		Short:   short,
		Aliases: aliases,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			return &usageError{cmd: cmd, err: fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())}
		},
	}
}

// Argument checks worded like docker's.

func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return &usageError{cmd: cmd, err: fmt.Errorf("%q requires exactly %d %s", cmd.CommandPath(), n, plural(n, "argument"))}
		}
		return nil
	}
}

func minArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < n {
			return &usageError{cmd: cmd, err: fmt.Errorf("%q requires at least %d %s", cmd.CommandPath(), n, plural(n, "argument"))}
		}
		return nil
	}
}

func maxArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > n {
			return &usageError{cmd: cmd, err: fmt.Errorf("%q accepts at most %d %s", cmd.CommandPath(), n, plural(n, "argument"))}
		}
		return nil
	}
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// Output helpers.

// writeJSON writes v indented with 4 spaces, like docker inspect.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "    ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// writeTable writes an aligned table with a header row.
// columns are the headers of a table in its narrow and wide forms (-o
// wide adds columns at the end).
type columns struct{ narrow, wide []string }

func newColumns(narrow []string, more ...string) columns {
	return columns{narrow, append(slices.Clone(narrow), more...)}
}

// write writes rows under the header of the chosen form.
func (c columns) write(w io.Writer, wide bool, rows [][]string) error {
	if wide {
		return writeTable(w, c.wide, rows)
	}
	return writeTable(w, c.narrow, rows)
}

func writeTable(w io.Writer, header []string, rows [][]string) error {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// Empty last cells leave padding behind: trim it.
	var out strings.Builder
	for _, line := range strings.SplitAfter(buf.String(), "\n") {
		if trimmed := strings.TrimRight(line, " \n"); trimmed != "" || line != "" {
			out.WriteString(trimmed)
			if strings.HasSuffix(line, "\n") {
				out.WriteByte('\n')
			}
		}
	}
	_, err := io.WriteString(w, out.String())
	return err
}

// shortIDLen is how much of an ID tables show.
const shortIDLen = 12

// shortID shortens an ID for a table.
func shortID(id string) string {
	if len(id) > shortIDLen {
		return id[:shortIDLen]
	}
	return id
}

// readInput reads a file, or stdin when name is "-".
func (a *app) readInput(name string) ([]byte, error) {
	if name == "-" {
		b, err := io.ReadAll(a.io.In)
		if err != nil {
			return nil, fmt.Errorf("read stdin: %w", err)
		}
		return b, nil
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("read input: %w", err)
	}
	return b, nil
}
