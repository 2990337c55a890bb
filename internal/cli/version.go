package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hostnet/hostnet/api"
)

// ClientVersion describes the hostnet binary.
type ClientVersion struct {
	Version    string            `json:"Version"`
	APIVersion api.SchemaVersion `json:"ApiVersion"`
	GoVersion  string            `json:"GoVersion"`
	Revision   string            `json:"Revision,omitempty"`
	OS         string            `json:"Os"`
	Arch       string            `json:"Arch"`
}

// clientVersion reads the build information of the running binary.
func clientVersion() ClientVersion {
	v := ClientVersion{Version: "(devel)", APIVersion: api.APIVersion, GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			v.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				v.Revision = s.Value
			}
		}
	}
	return v
}

func joinPolicyTypes(ts []api.PolicyType) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}

func newVersionCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Show the client's and the daemon's versions",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			cv := clientVersion()
			sv, err := a.client().Version(cmd.Context())
			if a.jsonOutput() {
				out := struct {
					Client ClientVersion    `json:"Client"`
					Server *api.VersionInfo `json:"Server,omitempty"`
				}{Client: cv}
				if err == nil {
					out.Server = sv
				}
				if werr := writeJSON(a.io.Out, out); werr != nil {
					return werr
				}
				return err
			}
			w := a.io.Out
			fmt.Fprintln(w, "Client:")
			fmt.Fprintf(w, " Version:      %s\n", cv.Version)
			fmt.Fprintf(w, " API version:  %d.%d\n", cv.APIVersion.Major, cv.APIVersion.Minor)
			fmt.Fprintf(w, " Go version:   %s\n", cv.GoVersion)
			if cv.Revision != "" {
				fmt.Fprintf(w, " Git commit:   %s\n", cv.Revision)
			}
			fmt.Fprintf(w, " OS/Arch:      %s/%s\n", cv.OS, cv.Arch)
			if err != nil {
				return err
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
			fmt.Fprintf(w, " Network policies:   %s\n", joinPolicyTypes(sv.Supported.NetworkPolicies))
			fmt.Fprintf(w, " Subnet policies:    %s\n", joinPolicyTypes(sv.Supported.SubnetPolicies))
			fmt.Fprintf(w, " Endpoint policies:  %s\n", joinPolicyTypes(sv.Supported.EndpointPolicies))
			return nil
		},
	}
}
