package api

import (
	"errors"
	"net/http"
)

// On the wire an error is a status and a JSON body naming its class:
//
//	404 {"class": "not found",   "message": "service \"web\" not found"}
//	400 {"class": "invalid",     ...}
//	409 {"class": "conflict",    ...}
//	503 {"class": "unavailable", ...}
//	403 {"class": "forbidden",   ...}
//	500 {"class": "internal",    ...}  any error that wraps no class
//
// The message is the backend's error text, unchanged, so a backend writes
// it to read well on its own: fmt.Errorf("service %q %w", name,
// ErrNotFound) reads `service "web" not found`. The client turns the body
// back into an error that wraps the class's sentinel and reads as the
// message.

// errorBody is an error as the server sends it.
type errorBody struct {
	Class   string `json:"class"`
	Message string `json:"message"`
}

// classInternal is the class of an error that wraps no sentinel.
const classInternal = "internal"

// classes maps each sentinel to its wire status. Its text is its class.
var classes = []struct {
	err    error
	status int
}{
	{ErrNotFound, http.StatusNotFound},
	{ErrInvalid, http.StatusBadRequest},
	{ErrConflict, http.StatusConflict},
	{ErrUnavailable, http.StatusServiceUnavailable},
	{ErrForbidden, http.StatusForbidden},
}

// classify returns the wire form of err and its status.
func classify(err error) (errorBody, int) {
	for _, c := range classes {
		if errors.Is(err, c.err) {
			return errorBody{Class: c.err.Error(), Message: err.Error()}, c.status
		}
	}
	return errorBody{Class: classInternal, Message: err.Error()}, http.StatusInternalServerError
}

// sentinel returns the sentinel of a wire class, or nil for "internal"
// and classes this client does not know.
func sentinel(class string) error {
	for _, c := range classes {
		if c.err.Error() == class {
			return c.err
		}
	}
	return nil
}

// classError is an error with a class: its text is msg alone, and it
// wraps both its class's sentinel and its cause, if any.
type classError struct {
	class error
	msg   string
	cause error
}

func (e *classError) Error() string { return e.msg }

func (e *classError) Unwrap() []error {
	var errs []error
	for _, err := range []error{e.class, e.cause} {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// newError makes a classError; cause may be nil.
func newError(class error, cause error, msg string) error {
	return &classError{class: class, msg: msg, cause: cause}
}
