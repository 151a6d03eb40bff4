/* tlsock version, known at compile time. */
#ifndef TLSOCK_VERSION_H
#define TLSOCK_VERSION_H

#define TLSOCK_VERSION_MAJOR  0
#define TLSOCK_VERSION_MINOR  1
#define TLSOCK_VERSION_PATCH  0
#define TLSOCK_VERSION_STRING "0.1.0"

#endif /* TLSOCK_VERSION_H */
