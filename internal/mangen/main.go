// Command mangen writes hostnet's man pages, generated from the programs
// themselves: hostnet(1) and a page per subcommand from the CLI's command
// tree (cobra/doc), hostnetd(8) from the daemon's flags. `make man` runs it;
// `make install` installs what it writes.
//
//	go run ./internal/mangen -o DIR [-version V]
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra/doc"

	"github.com/hostnet/hostnet/internal/cli"
	"github.com/hostnet/hostnet/internal/daemon"
)

func main() {
	out := flag.String("o", "docs/man", "write the pages into `directory`")
	version := flag.String("version", "", "the `version` the pages describe")
	flag.Parse()
	if err := generate(*out, *version, pageDate()); err != nil {
		fmt.Fprintln(os.Stderr, "mangen:", err)
		os.Exit(1)
	}
}

// pageDate is the date the pages carry: SOURCE_DATE_EPOCH's when set, for
// reproducible builds, else today.
func pageDate() time.Time {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return time.Unix(n, 0).UTC()
		}
	}
	return time.Now().UTC()
}

// generate writes hostnet's pages (section 1) and hostnetd's (section 8)
// into dir.
func generate(dir, version string, date time.Time) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	source := "hostnet"
	if version != "" {
		source += " " + version
	}
	root := cli.NewRootCommand(cli.IO{}, nil)
	root.DisableAutoGenTag = true
	header := &doc.GenManHeader{Section: "1", Date: &date, Source: source, Manual: "hostnet manual"}
	if err := doc.GenManTree(root, header, dir); err != nil {
		return fmt.Errorf("hostnet pages: %w", err)
	}
	f, err := os.Create(filepath.Join(dir, "hostnetd.8"))
	if err != nil {
		return err
	}
	if err := writeDaemonPage(f, source, date); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// roff escapes text for a man page: backslashes, and a dot or quote that
// would start a line as a request.
func roff(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, ".") || strings.HasPrefix(line, "'") {
			line = `\&` + line
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}

// writeDaemonPage writes hostnetd(8), its options from the daemon's own
// flag set.
func writeDaemonPage(w io.Writer, source string, date time.Time) error {
	fs := flag.NewFlagSet("hostnetd", flag.ContinueOnError)
	daemon.Flags(fs)
	fs.Bool("version", false, "print the version and exit")
	var b strings.Builder
	fmt.Fprintf(&b, ".TH HOSTNETD 8 %q %q \"hostnet manual\"\n", date.Format("Jan 2006"), source)
	b.WriteString(".SH NAME\nhostnetd \\- hostnet's daemon: the HNS v2 (HCN) API for Linux containers\n")
	b.WriteString(".SH SYNOPSIS\n.B hostnetd\n[\\fIOPTIONS\\fR]\n")
	b.WriteString(".SH DESCRIPTION\n" + roff(`hostnetd serves a REST API over a unix socket whose documents are the HNS v2 (HCN) JSON
documents Windows tooling sends to HNS, and programs one network namespace of the Linux
kernel, "the host" (its own, or the one --host-netns names): network namespaces, veth pairs,
bridges and nftables. Clients are hostnet(1), the CNI plugin hostnet-cni, and anything that
speaks HTTP on the socket.`) + "\n.PP\n" + roff(`At start it reconciles the kernel with its stored state, adopting what is already
right, so traffic keeps flowing across restarts; then it creates the default NAT network
"nat" unless told not to. SIGTERM stops it cleanly and leaves the kernel as it is.`) + "\n")
	b.WriteString(".SH OPTIONS\n" + roff("Each option may also be given as an environment variable, named in its description; an option on the command line wins.") + "\n")
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		b.WriteString(".TP\n\\fB\\-\\-" + roff(f.Name) + "\\fR")
		if name != "" {
			b.WriteString(" \\fI" + roff(name) + "\\fR")
		}
		b.WriteString("\n" + roff(usage))
		if f.DefValue != "" && f.DefValue != "false" {
			b.WriteString(" (default: " + roff(f.DefValue) + ")")
		}
		b.WriteString("\n")
	})
	b.WriteString(".SH LOGS\n" + roff(`hostnetd logs to its standard error (log/slog text, --log-level). Run by its systemd
unit, hostnetd.service, that is the journal: journalctl -u hostnetd.`) + "\n")
	b.WriteString(".SH FILES\n")
	for _, f := range [][2]string{
		{daemon.DefaultSocket, "the API's socket: mode 0600, owner root; with --socket-group, 0660 and owned by that group, whose members may use the API"},
		{filepath.Join(daemon.DefaultStateDir, "hostnet.db"), "the state (bbolt)"},
		{filepath.Join(daemon.DefaultRunDir, "netns") + "/", "bind mounts of the network namespaces hostnetd creates"},
		{"/run/netns/hn-ID", "their links for ip netns"},
		{"/etc/netns/hn-ID/resolv.conf", "their resolv.conf, for ip netns exec and hostnet run"},
	} {
		b.WriteString(".TP\n.I " + roff(f[0]) + "\n" + roff(f[1]) + "\n")
	}
	b.WriteString(".SH SEE ALSO\n.BR hostnet (1),\n.BR ip\\-netns (8),\n.BR nft (8),\n.BR systemctl (1)\n")
	_, err := io.WriteString(w, b.String())
	return err
}
