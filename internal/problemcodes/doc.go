// Package problemcodes holds, in its tests only, the table of bad
// configurations across the module's packages (the root, imap, graph,
// fleet, the examples) and the Problem.Code each must carry, and a scan of
// the module's sources for Problem literals without a Code. It lives apart
// from the root package so that the root's tests (and its fuzz target) do
// not link the providers.
package problemcodes
