package api

import (
	"fmt"
	"net/http"
)

// CodeTimeout is the HRESULT of ERROR_TIMEOUT.
const CodeTimeout ErrorCode = 0x800705B4

// NoLease is the error of an attach whose endpoint got no DHCP lease in
// time: 504, as a gateway's upstream (the segment's DHCP server) that did
// not answer.
func NoLease(format string, args ...any) *Error {
	return &Error{Code: CodeTimeout, Status: http.StatusGatewayTimeout, Message: fmt.Sprintf(format, args...)}
}
