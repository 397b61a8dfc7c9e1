package plugin

import "syscall"

const mapNoReserve = syscall.MAP_NORESERVE
