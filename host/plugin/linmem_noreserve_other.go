//go:build darwin || freebsd

package plugin

const mapNoReserve = 0
