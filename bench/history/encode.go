package history

import (
	"encoding/json"
	"sort"
	"strconv"
)

// AppendJSON appends op's JSON encoding (the same fields, names and
// omissions as encoding/json gives the Op struct) to b. It is several times
// faster than encoding/json, which matters: the writer encodes every
// operation of the run.
func AppendJSON(b []byte, op *Op) []byte {
	b = AppendIndex(b, op.Index)
	return AppendJSONTail(b, op)
}

// AppendIndex appends the head of an entry's JSON encoding, up to its
// index: `{"index":N`. AppendIndex(b, op.Index) followed by
// AppendJSONTail(b, op) is AppendJSON(b, op).
func AppendIndex(b []byte, index int64) []byte {
	b = append(b, `{"index":`...)
	return strconv.AppendInt(b, index, 10)
}

// AppendJSONTail appends the rest of op's JSON encoding after its index
// (from `,"time":` to the closing brace): what a producer can encode before
// the entry has its place in the history (the recorder's workers encode
// their entries, and its writer numbers them).
func AppendJSONTail(b []byte, op *Op) []byte {
	b = append(b, `,"time":`...)
	b = strconv.AppendInt(b, op.Time, 10)
	b = append(b, `,"type":`...)
	b = appendString(b, string(op.Type))
	b = append(b, `,"process":`...)
	b = strconv.AppendInt(b, int64(op.Process), 10)
	if op.Impl != "" {
		b = append(b, `,"impl":`...)
		b = appendString(b, op.Impl)
	}
	b = append(b, `,"f":`...)
	b = appendString(b, op.F)
	if op.Key != "" {
		b = append(b, `,"key":`...)
		b = appendString(b, op.Key)
	}
	if op.Value != nil {
		b = append(b, `,"value":`...)
		b = strconv.AppendInt(b, *op.Value, 10)
	}
	if op.Token != "" {
		b = append(b, `,"token":`...)
		b = appendString(b, op.Token)
	}
	if op.Fence != 0 {
		b = append(b, `,"fence":`...)
		b = strconv.AppendUint(b, op.Fence, 10)
	}
	if op.Error != "" {
		b = append(b, `,"error":`...)
		b = appendString(b, op.Error)
	}
	if op.Fault != "" {
		b = append(b, `,"fault":`...)
		b = appendString(b, op.Fault)
	}
	if len(op.Nodes) > 0 {
		b = append(b, `,"nodes":[`...)
		for i, n := range op.Nodes {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, n)
		}
		b = append(b, ']')
	}
	if len(op.Attrs) > 0 {
		keys := make([]string, 0, len(op.Attrs))
		for k := range op.Attrs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b = append(b, `,"attrs":{`...)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendString(b, op.Attrs[k])
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

// appendString appends s as a JSON string: plain printable ASCII is copied,
// anything else goes through encoding/json (same escaping, incl. HTML-safe).
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if !plain[s[i]] {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// plain[c] says byte c is copied into a JSON string as is: printable ASCII
// but the quote, the backslash and the HTML-escaped <, > and &. One table
// load per byte instead of seven comparisons: the writer checks every byte
// of every string of every entry.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = true
	}
	for _, c := range `"\<>&` {
		t[c] = false
	}
	return t
}()
