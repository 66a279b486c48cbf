/**
 * An HTTP token (RFC 9110, section 5.6.2): what a header name must be. Node refuses any other name when
 * a request is made, so configs check names at load time with this.
 */
export const HTTP_TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
