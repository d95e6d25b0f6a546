package filter

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/net/bpf"
)

const (
	// insnSize is sizeof(struct sock_filter): u16 code, u8 jt, u8 jf, u32 k.
	insnSize = 8
	// maxInsns is the kernel's BPF_MAXINSNS: a longer program is refused
	// by seccomp(2), so it is refused here, where the error is clearer.
	maxInsns = 4096
)

// Classic BPF opcode fields (linux/bpf_common.h), for the checks below.
const (
	bpfClassMask = 0x07
	bpfJMP       = 0x05
	bpfRET       = 0x06
	bpfOpMask    = 0xf0
	bpfJA        = 0x00
)

// errCorrupt marks a program that cannot be what Compile wrote: a cached
// file with it is rebuilt rather than handed to an init that would fail to
// load it.
var errCorrupt = errors.New("corrupt seccomp program")

// encode lays insns out as the kernel reads an array of struct sock_filter:
// packed, native byte order.
func encode(insns []bpf.RawInstruction) []byte {
	b := make([]byte, 0, len(insns)*insnSize)
	for _, in := range insns {
		b = binary.NativeEndian.AppendUint16(b, in.Op)
		b = append(b, in.Jt, in.Jf)
		b = binary.NativeEndian.AppendUint32(b, in.K)
	}
	return b
}

// decode is the inverse of encode. It refuses what the kernel would refuse
// on its own grounds (empty, too long, a partial instruction, a jump out of
// the program, a last instruction that is not a return) so that a damaged
// file is caught here and not when the sandbox starts.
func decode(b []byte) ([]bpf.RawInstruction, error) {
	switch {
	case len(b) == 0:
		return nil, fmt.Errorf("%w: empty", errCorrupt)
	case len(b)%insnSize != 0:
		return nil, fmt.Errorf("%w: %d bytes is not a whole number of instructions", errCorrupt, len(b))
	case len(b)/insnSize > maxInsns:
		return nil, fmt.Errorf("%w: %d instructions, the kernel takes at most %d", errCorrupt, len(b)/insnSize, maxInsns)
	}
	insns := make([]bpf.RawInstruction, len(b)/insnSize)
	for i := range insns {
		p := b[i*insnSize:]
		insns[i] = bpf.RawInstruction{
			Op: binary.NativeEndian.Uint16(p),
			Jt: p[2],
			Jf: p[3],
			K:  binary.NativeEndian.Uint32(p[4:]),
		}
	}
	if err := checkFlow(insns); err != nil {
		return nil, err
	}
	return insns, nil
}

// checkFlow verifies that every jump lands inside the program and that the
// program cannot run off its end. Classic BPF only jumps forward, relative
// to the next instruction.
func checkFlow(insns []bpf.RawInstruction) error {
	n := len(insns)
	for pc, in := range insns {
		if in.Op&bpfClassMask != bpfJMP {
			continue
		}
		if in.Op&bpfOpMask == bpfJA {
			if uint64(pc)+1+uint64(in.K) >= uint64(n) {
				return fmt.Errorf("%w: instruction %d jumps %d past the end", errCorrupt, pc, in.K)
			}
			continue
		}
		if pc+1+int(max(in.Jt, in.Jf)) >= n {
			return fmt.Errorf("%w: instruction %d jumps past the end", errCorrupt, pc)
		}
	}
	if insns[n-1].Op&bpfClassMask != bpfRET {
		return fmt.Errorf("%w: last instruction is not a return", errCorrupt)
	}
	return nil
}
