// Package redisslot computes Redis Cluster hash slots the way the servers
// do (the Redis Cluster specification, "Keys distribution model"): CRC16
// (XMODEM) of the key, or of its hash tag, modulo 16384. The host uses it to
// refuse a key layout whose keys of one script would span slots, and to
// pick probe keys that land on each primary.
package redisslot

import "strings"

// Slots is the number of hash slots of a Redis Cluster.
const Slots = 16384

// Slot is the hash slot of key.
func Slot(key string) int { return int(crc16(Tag(key)) % Slots) }

// Tag is the part of key that is hashed: the content of the first {...}
// when it is not empty, else the whole key.
func Tag(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j]
		}
	}
	return key
}

// crc16 is CRC-16/XMODEM (polynomial 0x1021, initial value 0).
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
