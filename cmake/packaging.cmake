# Debian packages with CPack (`make deb`): one per install component.
#   libtlsock0     component lib:  the shared library (runtime)
#   libtlsock-dev  component dev:  headers, static library, .so link, pkg-config, CMake package
#   tlsock         component tool: the command-line tool and its manual page
# and, when libtlsock_redis is built, so that only its users get hiredis:
#   libtlsock-redis0     component redis:     the Redis store's shared library
#   libtlsock-redis-dev  component redis-dev: its header, .so link, pkg-config file and CMake
#                                             targets (tlsock::redis)
# Runtime dependencies come from dpkg-shlibdeps. The development package depends on the exact
# library version and on the development files of what tlsock.pc names in Requires.private
# (pkg-config resolves those even without --static; the static library needs them), libuv's
# also because <tlsock/uv.h> includes <uv.h>.
set(CPACK_GENERATOR DEB)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL lib dev tool)
if(TLSOCK_WITH_REDIS)
  list(APPEND CPACK_COMPONENTS_ALL redis redis-dev)
endif()
set(CPACK_PACKAGE_NAME tlsock)
set(CPACK_PACKAGE_VENDOR "tlsock")
set(CPACK_PACKAGE_CONTACT "tlsock developers <tlsock@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "TLS over TCP sockets for C (OpenSSL 3 or GnuTLS)")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# The tool links the libraries of the same build: dpkg-shlibdeps finds them there.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS ${PROJECT_BINARY_DIR}/src
  ${PROJECT_BINARY_DIR}/src/redis)

set(CPACK_DEBIAN_LIB_PACKAGE_NAME libtlsock0)
set(CPACK_DEBIAN_LIB_DESCRIPTION "tlsock: TLS over TCP sockets for C - shared library
 A TLS socket library with blocking streams, user callbacks, a sans-I/O memory mode and a libuv
 driver, over OpenSSL 3 and GnuTLS chosen at run time.")

set(CPACK_DEBIAN_DEV_PACKAGE_NAME libtlsock-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
list(JOIN TLSOCK_DEB_DEV_REQUIRES ", " TLSOCK_DEB_DEV_REQUIRES) # made with tlsock.pc's
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS "libtlsock0 (= ${PROJECT_VERSION}), ${TLSOCK_DEB_DEV_REQUIRES}")
set(CPACK_DEBIAN_DEV_DESCRIPTION "tlsock: TLS over TCP sockets for C - development files
 Headers, the static library, pkg-config files (tlsock, tlsock-uv) and the CMake package
 (tlsock::tlsock, tlsock::uv).")

set(CPACK_DEBIAN_TOOL_PACKAGE_NAME tlsock)
set(CPACK_DEBIAN_TOOL_PACKAGE_SECTION net)
set(CPACK_DEBIAN_TOOL_PACKAGE_DEPENDS "libtlsock0 (= ${PROJECT_VERSION})")
set(CPACK_DEBIAN_TOOL_DESCRIPTION "tlsock: TLS over TCP sockets for C - command-line tool
 tlsock demo, connect, serve, cert, tunnel and version.")

set(CPACK_DEBIAN_REDIS_PACKAGE_NAME libtlsock-redis0)
set(CPACK_DEBIAN_REDIS_PACKAGE_DEPENDS "libtlsock0 (= ${PROJECT_VERSION})")
set(CPACK_DEBIAN_REDIS_DESCRIPTION "tlsock: TLS over TCP sockets for C - Redis session store
 A session store and ticket key distribution in Redis for tlsock servers (hiredis).")
set(CPACK_DEBIAN_REDIS-DEV_PACKAGE_NAME libtlsock-redis-dev)
set(CPACK_DEBIAN_REDIS-DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_REDIS-DEV_PACKAGE_DEPENDS
  "libtlsock-redis0 (= ${PROJECT_VERSION}), libtlsock-dev (= ${PROJECT_VERSION}), libhiredis-dev")
set(CPACK_DEBIAN_REDIS-DEV_DESCRIPTION "tlsock: TLS over TCP sockets for C - Redis store files
 The header tlsock/redis.h, the .so link, the pkg-config file tlsock-redis and the
 CMake target tlsock::redis.")
if(TLSOCK_WITH_REDIS)
  string(APPEND CPACK_DEBIAN_TOOL_PACKAGE_DEPENDS ", libtlsock-redis0 (= ${PROJECT_VERSION})")
endif()

include(CPack)
