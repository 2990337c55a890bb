package api

import (
	"errors"
	"fmt"
	"net/http"
)

// ErrorCode is an HNS-style HRESULT carried in error answers.
type ErrorCode uint32

// The error codes hostnet answers with. Where HNS has a code for a failure,
// hostnet uses it, so that clients written for HNS keep working.
const (
	CodeInvalidNetwork       ErrorCode = 0x803B000A
	CodeInvalidNetworkType   ErrorCode = 0x803B000B
	CodeInvalidEndpoint      ErrorCode = 0x803B000C
	CodeInvalidPolicy        ErrorCode = 0x803B000D
	CodeInvalidPolicyType    ErrorCode = 0x803B000E
	CodePortAlreadyExists    ErrorCode = 0x803B0013
	CodeEndpointAttached     ErrorCode = 0x803B0014
	CodeRequestUnsupported   ErrorCode = 0x803B0015
	CodeInvalidJSON          ErrorCode = 0x803B001B
	CodeInvalidIP            ErrorCode = 0x803B001E
	CodeElementNotFound      ErrorCode = 0x00000490
	CodeObjectAlreadyExists  ErrorCode = 0x00001392
	CodeAddressesExhausted   ErrorCode = 0x80070103 // HRESULT of ERROR_NO_MORE_ITEMS
	CodeInvalidNamespace     ErrorCode = 0x803B0025
	CodeNetworkHasEndpoints  ErrorCode = 0x80070091 // HRESULT of ERROR_DIR_NOT_EMPTY
	CodeInternal             ErrorCode = 0x80004005 // E_FAIL
	CodeResourceInUse        ErrorCode = 0x800700AA // HRESULT of ERROR_BUSY
	CodeInvalidModifyRequest ErrorCode = 0x80070057 // E_INVALIDARG
	CodeAccessDenied         ErrorCode = 0x80070005 // E_ACCESSDENIED
)

func (c ErrorCode) String() string { return fmt.Sprintf("0x%08X", uint32(c)) }

// Error is a failure with the HNS error code and HTTP status it is answered
// with. Its message names the field and the value at fault.
type Error struct {
	Code    ErrorCode
	Status  int
	Message string
	Err     error // cause, if any
}

func (e *Error) Error() string {
	if e.Err != nil && e.Message == "" {
		return e.Err.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// Invalid reports bad input (HTTP 400).
func Invalid(code ErrorCode, format string, args ...any) *Error {
	return &Error{Code: code, Status: http.StatusBadRequest, Message: fmt.Sprintf(format, args...)}
}

// Conflict reports a request that collides with existing state (HTTP 409).
func Conflict(code ErrorCode, format string, args ...any) *Error {
	return &Error{Code: code, Status: http.StatusConflict, Message: fmt.Sprintf(format, args...)}
}

// Forbidden is a 403: the caller may not do what it asks.
func Forbidden(format string, args ...any) *Error {
	return &Error{Code: CodeAccessDenied, Status: http.StatusForbidden, Message: fmt.Sprintf(format, args...)}
}

// NotFound reports a missing object (HTTP 404) of the given kind.
func NotFound(kind, ref string) *Error {
	return &Error{Code: CodeElementNotFound, Status: http.StatusNotFound, Message: fmt.Sprintf("%s %q not found", kind, ref)}
}

// Unsupported reports a request this build understands but cannot carry out
// on Linux or has not implemented (HTTP 400).
func Unsupported(format string, args ...any) *Error {
	return &Error{Code: CodeRequestUnsupported, Status: http.StatusBadRequest, Message: fmt.Sprintf(format, args...)}
}

// InternalError wraps a failure of hostnet or of the kernel (HTTP 500).
func InternalError(err error, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	if err != nil {
		msg += ": " + err.Error()
	}
	return &Error{Code: CodeInternal, Status: http.StatusInternalServerError, Message: msg, Err: err}
}

// AsError returns err as an *Error; an error of another kind becomes an
// internal error.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return InternalError(err, "internal error")
}

// IsNotFound reports whether err says an object does not exist.
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == http.StatusNotFound
}

// IsConflict reports whether err says a request collided with existing state.
func IsConflict(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == http.StatusConflict
}

// CodeOf returns the HNS code of err, or 0 when err carries none.
func CodeOf(err error) ErrorCode {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

// ErrorResponse is the wire form of a failed call.
type ErrorResponse struct {
	Success   bool      `json:"Success"`
	Error     string    `json:"Error"`
	ErrorCode ErrorCode `json:"ErrorCode"`
}
