"""What an untrusted definition cannot do: guard expressions and the host code it may name."""
