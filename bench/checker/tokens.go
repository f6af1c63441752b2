package checker

import (
	"encoding/binary"
	"unsafe"
)

// tokenRef is a token kept in a phase's tokenArena, in 8 bytes where a
// string takes 16 plus its own allocation: a pointer to the token's length
// (uvarint) followed by its bytes. The zero tokenRef is "". The pointer
// keeps its arena chunk alive as long as an Operation or ResWrite holds it.
type tokenRef struct{ p *byte }

// String is the token; it shares the arena's bytes, which never change.
func (t tokenRef) String() string {
	if t.p == nil {
		return ""
	}
	var n uint64
	var shift uint
	i := 0
	for {
		b := *(*byte)(unsafe.Add(unsafe.Pointer(t.p), i))
		i++
		n |= uint64(b&0x7f) << shift
		if b < 0x80 {
			break
		}
		shift += 7
	}
	return unsafe.String((*byte)(unsafe.Add(unsafe.Pointer(t.p), i)), int(n))
}

// tokenArena stores a phase's tokens packed back to back in chunks that
// are written once and never moved: a 22-byte token costs 23 bytes, not a
// 24-byte allocation plus a 16-byte string header per holder.
type tokenArena struct {
	chunk []byte // the chunk being filled; its bytes up to len never change
}

const tokenChunk = 64 << 10

// add stores s and returns its reference.
func (a *tokenArena) add(s string) tokenRef {
	if s == "" {
		return tokenRef{}
	}
	var lenBuf [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(lenBuf[:], uint64(len(s))) + len(s)
	if cap(a.chunk)-len(a.chunk) < n {
		a.chunk = make([]byte, 0, max(tokenChunk, n))
	}
	start := len(a.chunk)
	a.chunk = binary.AppendUvarint(a.chunk, uint64(len(s)))
	a.chunk = append(a.chunk, s...) // within capacity: never reallocates
	return tokenRef{&a.chunk[start]}
}
