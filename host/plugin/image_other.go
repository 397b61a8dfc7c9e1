//go:build !linux

package plugin

import "errors"

// extractData: elsewhere the data segments stay in the module (no memfd).
const extractData = false

type memImage struct {
	size int
	data []byte
}

func newMemImage([]byte) (*memImage, error) { return nil, errors.New("memory images need Linux") }

func (im *memImage) mapOver([]byte) bool { return false }

func (im *memImage) close() {}
