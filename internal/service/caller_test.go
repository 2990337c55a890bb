package service

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/netmodel"
)

// A caller that is not root may hand hostnet only a namespace it owns:
// hostnet runs as root and would otherwise put a NIC into any namespace
// of the host for anyone the socket admits.
func TestCallersWrapOnlyTheirOwnNamespaces(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown needs root")
	}
	l := newLab(t)
	l.network("blue", "10.7.0.0/24")
	dir := t.TempDir()
	mine, theirs := filepath.Join(dir, "mine"), filepath.Join(dir, "theirs")
	for i, p := range []string{mine, theirs} {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		l.host.AddNamespace(p, netmodel.NSID{Dev: 3, Ino: uint64(100 + i)})
	}
	if err := os.Chown(mine, 1000, 1000); err != nil {
		t.Fatal(err)
	}
	before := l.state()
	user := WithCaller(context.Background(), Caller{UID: 1000, GID: 1000, PID: 4242})
	_, err := l.svc.CreateEndpoint(user, api.Endpoint{Name: "theirs", HostComputeNetwork: "blue", HostComputeNamespace: "cni:theirs", NetNamespacePath: theirs})
	refused(t, "a namespace of root's, for uid 1000", err, http.StatusForbidden, "belongs to uid 0, not to the caller (uid 1000)")
	l.unchanged("the refused endpoint", before)
	if _, err := l.svc.CreateEndpoint(user, api.Endpoint{Name: "mine", HostComputeNetwork: "blue", HostComputeNamespace: "cni:mine", NetNamespacePath: mine}); err != nil {
		t.Errorf("a namespace of the caller's own: %v", err)
	}
	root := WithCaller(context.Background(), Caller{UID: 0, PID: 1})
	if _, err := l.svc.CreateEndpoint(root, api.Endpoint{Name: "theirs", HostComputeNetwork: "blue", HostComputeNamespace: "cni:theirs", NetNamespacePath: theirs}); err != nil {
		t.Errorf("root naming any namespace: %v", err)
	}
	l.check()
}
