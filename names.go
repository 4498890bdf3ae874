package modelplane

import "crypto/rand"

// DevelopmentName is the name the development deployment always has, and the path
// segment that addresses it (/models/{id}/development, .../deployments/development).
const DevelopmentName = "development"

// ProductionEnvironment is the environment every model has, which published deployments are
// promoted to by default.
const ProductionEnvironment = "production"

// idAlphabet is what modelplane's IDs are made of: lowercase letters and digits.
const idAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

// NewID returns a random ID of n lowercase alphanumerics (8 for models and deployments).
func NewID(n int) string {
	b := make([]byte, n)
	// Rejection sampling keeps every character equally likely.
	const limit = 256 - 256%len(idAlphabet)
	buf := make([]byte, 2*n)
	for i := 0; i < n; {
		if _, err := rand.Read(buf); err != nil {
			panic(err) // crypto/rand does not fail on supported platforms
		}
		for _, c := range buf {
			if int(c) < limit && i < n {
				b[i] = idAlphabet[int(c)%len(idAlphabet)]
				i++
			}
		}
	}
	return string(b)
}
