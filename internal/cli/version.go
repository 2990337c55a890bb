package cli

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hostnet/hostnet/api"
)

// buildVersion is the version the build was given, by `make build`:
// -ldflags "-X github.com/hostnet/hostnet/internal/cli.buildVersion=...".
// Without it, the module's version from the build information is used.
var buildVersion string

// ClientVersion describes the hostnet binary.
type ClientVersion struct {
	Version    string            `json:"Version"`
	APIVersion api.SchemaVersion `json:"ApiVersion"`
	GoVersion  string            `json:"GoVersion"`
	Revision   string            `json:"Revision,omitempty"`
	Modified   bool              `json:"Modified,omitempty"`
	BuildTime  string            `json:"BuildTime,omitempty"`
	OS         string            `json:"Os"`
	Arch       string            `json:"Arch"`
}

// clientVersion reads the build information of the running binary
// (runtime/debug.ReadBuildInfo).
func clientVersion() ClientVersion {
	v := ClientVersion{Version: "(devel)", APIVersion: api.APIVersion, GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			v.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				v.Revision = s.Value
			case "vcs.modified":
				v.Modified = s.Value == "true"
			case "vcs.time":
				v.BuildTime = s.Value
			}
		}
	}
	if buildVersion != "" {
		v.Version = buildVersion
	}
	return v
}

// String is the one line of `hostnet --version`.
func (v ClientVersion) String() string {
	s := v.Version
	var details []string
	if v.Revision != "" {
		rev := v.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if v.Modified {
			rev += ", modified"
		}
		details = append(details, "commit "+rev)
	}
	details = append(details, v.GoVersion+" "+v.OS+"/"+v.Arch, fmt.Sprintf("API %d.%d", v.APIVersion.Major, v.APIVersion.Minor))
	return s + " (" + strings.Join(details, "; ") + ")"
}

func joinPolicyTypes(ts []api.PolicyType) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}

// versionDocument is what `hostnet version` reports.
type versionDocument struct {
	Client ClientVersion    `json:"Client"`
	Server *api.VersionInfo `json:"Server,omitempty"`
}

func newVersionCommand(a *app) *cobra.Command {
	return a.addOutputFlag(&cobra.Command{
		Use:   "version",
		Short: "Show the client's and the daemon's versions",
		Long: "Show the version of hostnet (as 'hostnet --version' does) and of the daemon, with the\n" +
			"network types and policies the daemon supports.",
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			doc := versionDocument{Client: clientVersion()}
			sv, err := a.client().Version(cmd.Context())
			if err == nil {
				doc.Server = sv
			}
			if rerr := a.render(doc, func(bool) error { return writeVersion(a.io.Out, doc) }); rerr != nil {
				return rerr
			}
			return err
		},
	})
}

// writeVersion writes the text form of `hostnet version`.
func writeVersion(w io.Writer, doc versionDocument) error {
	cv := doc.Client
	fmt.Fprintln(w, "Client:")
	fmt.Fprintf(w, " Version:      %s\n", cv.Version)
	fmt.Fprintf(w, " API version:  %d.%d\n", cv.APIVersion.Major, cv.APIVersion.Minor)
	fmt.Fprintf(w, " Go version:   %s\n", cv.GoVersion)
	if cv.Revision != "" {
		modified := ""
		if cv.Modified {
			modified = " (modified)"
		}
		fmt.Fprintf(w, " Git commit:   %s%s\n", cv.Revision, modified)
	}
	if cv.BuildTime != "" {
		fmt.Fprintf(w, " Built:        %s\n", cv.BuildTime)
	}
	fmt.Fprintf(w, " OS/Arch:      %s/%s\n", cv.OS, cv.Arch)
	sv := doc.Server
	if sv == nil {
		return nil
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Server:")
	fmt.Fprintf(w, " API version:        %d.%d\n", sv.Version.Major, sv.Version.Minor)
	fmt.Fprintf(w, " Schema version:     %d.%d\n", sv.SchemaVersion.Major, sv.SchemaVersion.Minor)
	if sv.Build != "" {
		fmt.Fprintf(w, " Build:              %s\n", sv.Build)
	}
	types := make([]string, len(sv.Supported.NetworkTypes))
	for i, t := range sv.Supported.NetworkTypes {
		types[i] = string(t)
	}
	fmt.Fprintf(w, " Network types:      %s\n", strings.Join(types, ", "))
	if missing := notBuilt(sv.Supported.NetworkTypes); len(missing) > 0 {
		fmt.Fprintf(w, " Not built yet:      %s\n", strings.Join(missing, ", "))
	}
	fmt.Fprintf(w, " Network policies:   %s\n", joinPolicyTypes(sv.Supported.NetworkPolicies))
	fmt.Fprintf(w, " Subnet policies:    %s\n", joinPolicyTypes(sv.Supported.SubnetPolicies))
	fmt.Fprintf(w, " Endpoint policies:  %s\n", joinPolicyTypes(sv.Supported.EndpointPolicies))
	return nil
}
