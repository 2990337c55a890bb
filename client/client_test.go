package client

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestUnreachableMessages(t *testing.T) {
	denied := &UnreachableError{Socket: "/run/hostnet/hostnet.sock", Err: os.NewSyscallError("connect", syscall.EACCES)}
	if msg := denied.Error(); !strings.Contains(msg, "permission denied") || !strings.Contains(msg, "sudo") || !strings.Contains(msg, "--socket-group") || strings.Contains(msg, "is it running") {
		t.Errorf("permission denied: %q", msg)
	}
	_, err := New(filepath.Join(t.TempDir(), "none.sock")).Version(context.Background())
	if !IsUnreachable(err) || !strings.Contains(err.Error(), ": is it running? (connect: no such file or directory)") {
		t.Errorf("no daemon: %v", err)
	}
}
