package main

// main is never called: the host runs the module as a reactor and calls
// the SDK's exports; the handlers are registered from init (guest_wasip1.go).
func main() {}
