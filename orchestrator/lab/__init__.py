"""The lab: a local fleet of real hosts (mount namespaces with their own sshd, and on "full"
hosts their own containerd and dockerd) for demos and host-side tests.

`fleet` brings it up, reports on it and takes it down; `hostdef` is what one host is made of;
`supervisor` is the process that holds a host's namespace; `defaults` names its paths."""
