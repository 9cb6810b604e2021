package simulcast

import (
	"encoding/binary"
	"testing"
	"time"
)

// bweFuzzRecord is how many input bytes make one packet result.
const bweFuzzRecord = 8

// FuzzGCCFeedback feeds an estimator arbitrary feedback decoded from the
// input, 8 bytes per packet: send and arrival time steps (signed, 100 us
// units), size, and a flag byte (received, probe, end of feedback, a REMB
// or RTT report, a clock jump). The estimate must stay within its bounds
// and its state finite.
func FuzzGCCFeedback(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x32, 0x00, 0x32, 0x00, 0xb0, 0x04, 0x01, 0x00})
	f.Add(bweFuzzSteady(200, 50, 50, 0x01))             // steady, all received
	f.Add(bweFuzzSteady(200, 50, 60, 0x01))             // growing queue
	f.Add(bweFuzzSteady(200, 50, 50, 0x00))             // all lost
	f.Add(bweFuzzSteady(200, 50, -50, 0x03))            // arrivals backwards, probes
	f.Add(bweFuzzSteady(100, 0, 0, 0x05|0x08|0x10))     // same instant, REMB and RTT
	f.Add(bweFuzzSteady(100, -32768, 32767, 0x01|0x20)) // clock jumps
	f.Fuzz(func(t *testing.T, data []byte) {
		c := newBWEChecker(t, GCCConfig{Initial: 500e3, Min: 50e3, Max: 5e6})
		rs := make([]PacketResult, 0, 64)
		var send, arr int64 = 1e18, 12345
		for len(data) >= bweFuzzRecord {
			rec := data[:bweFuzzRecord]
			data = data[bweFuzzRecord:]
			send += int64(int16(binary.LittleEndian.Uint16(rec[0:]))) * 100e3
			arr += int64(int16(binary.LittleEndian.Uint16(rec[2:]))) * 100e3
			size := int(binary.LittleEndian.Uint16(rec[4:]))
			flags := rec[6]
			if flags&0x20 != 0 {
				arr += int64(int8(rec[7])) * 1e9
			}
			rs = append(rs, PacketResult{Seq: uint16(len(rs)), SendTime: send, Arrival: arr, Size: size,
				Received: flags&0x01 != 0, Probe: flags&0x02 != 0})
			if flags&0x08 != 0 {
				c.g.OnREMB(send, uint64(size)*1000)
			}
			if flags&0x10 != 0 {
				c.g.OnRTT(send, time.Duration(rec[7])*time.Millisecond)
			}
			if flags&0x04 != 0 || len(rs) == cap(rs) {
				c.feedback(send+int64(rec[7])*1e6, rs)
				rs = rs[:0]
			}
		}
		c.feedback(send, rs)
	})
}

// bweFuzzSteady is a seed of n packets of 1200 bytes with fixed time steps
// (100 us units) and flags, ending a feedback every 10 packets.
func bweFuzzSteady(n int, sendStep, arrStep int16, flags byte) []byte {
	b := make([]byte, 0, n*bweFuzzRecord)
	for i := range n {
		fl := flags
		if i%10 == 9 {
			fl |= 0x04
		}
		b = binary.LittleEndian.AppendUint16(b, uint16(sendStep))
		b = binary.LittleEndian.AppendUint16(b, uint16(arrStep))
		b = binary.LittleEndian.AppendUint16(b, 1200)
		b = append(b, fl, 50)
	}
	return b
}
