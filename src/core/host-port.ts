/** Network addresses written for people and URLs. */

/** A host as it stands before `:port` or in a URL: an IPv6 address in brackets (`[::1]`), anything else as it is. */
export function bracketHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/** `host:port`, with an IPv6 address in brackets (`[::1]:53`). */
export function hostPort(host: string, port: number): string {
  return `${bracketHost(host)}:${port}`;
}
