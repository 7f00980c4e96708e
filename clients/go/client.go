// Package switchboard is a small Go client for Switchboard's gRPC API. The generated stubs are in
// the switchboardv1 package; this file adds error decoding.
package switchboard

import (
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrorInfo returns the gRPC code of err and the reason and metadata of the google.rpc.ErrorInfo
// Switchboard attaches to every error (empty when there is none, e.g. a deadline).
func ErrorInfo(err error) (codes.Code, string, map[string]string) {
	st, ok := status.FromError(err)
	if !ok {
		return codes.Unknown, "", nil
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return st.Code(), info.GetReason(), info.GetMetadata()
		}
	}
	return st.Code(), "", nil
}
