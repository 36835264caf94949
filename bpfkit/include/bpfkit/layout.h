/* For a crate's bpf/layout.c, which bpfkit::build builds for the host and
 * runs: each macro prints one row, "<name> <number>", of what C made of
 * the map headers. The crate's layout test (bpfkit::layout) builds the
 * same rows from the Rust mirrors and compares. */
#ifndef BPFKIT_LAYOUT_H
#define BPFKIT_LAYOUT_H

#include <stddef.h>
#include <stdio.h>

/* "<struct> size <bytes>" */
#define SIZE(s) printf(#s " size %zu\n", sizeof(struct s))
/* "<struct>.<field> <offset>" */
#define FIELD(s, f) printf(#s "." #f " %zu\n", offsetof(struct s, f))
/* "<constant> <value>", for constants the Rust side repeats. */
#define CONST(c) printf(#c " %u\n", c)

#endif
