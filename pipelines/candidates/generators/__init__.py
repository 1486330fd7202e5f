"""Question generators whose answers are computed from masks and geometry (size, position, instance counts,
measurements, laterality). Each turns the described rows of one dataset into candidate specs that join the
recognition candidates on the same gate -> select -> render -> export path."""
