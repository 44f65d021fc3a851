# The Debian package: `cpack -G DEB` in the build tree writes outbox_VERSION_ARCH.deb from what
# cmake/install.cmake installs, with the prefix /usr and the binary stripped (the build keeps its
# debug info). tests/package/deb-test builds it, installs it into a throwaway root and checks it.
set(OUTBOX_PACKAGE_MAINTAINER "outbox maintainers <outbox@example.org>" CACHE STRING
    "Maintainer field of the Debian package")

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME outbox)
set(CPACK_PACKAGE_VENDOR "outbox")
set(CPACK_PACKAGE_CONTACT "${OUTBOX_PACKAGE_MAINTAINER}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "transactional outbox for PostgreSQL and RabbitMQ")
# Debian wants the lines of the long description shorter than 80 characters.
set(CPACK_PACKAGE_DESCRIPTION
    "outbox publishes the rows that services write into an outbox table, in
the same transaction as their change, to RabbitMQ with publisher confirms
(outbox relay), and applies the events to read-model tables (outbox
replicate) or to a service's SQL handlers behind an inbox (outbox
consume), each idempotently. It includes the schema migrations, lag and
Nagios-style checks, verify and resync, systemd units, and Prometheus
alert rules with a Grafana dashboard.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
# Every component in the one package, the config included (install(... EXCLUDE_FROM_ALL) keeps it
# out of a plain `cmake --install` only).
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_GROUPING ALL_COMPONENTS_IN_ONE)
set(CPACK_COMPONENTS_ALL runtime man systemd doc monitoring config deb)

set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# The libraries the binary links (dpkg-shlibdeps), and systemd-sysusers for the user outbox.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "systemd | systemd-standalone-sysusers | systemd-sysusers")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/packaging/deb/conffiles ${PROJECT_SOURCE_DIR}/packaging/deb/postinst
    ${PROJECT_SOURCE_DIR}/packaging/deb/prerm ${PROJECT_SOURCE_DIR}/packaging/deb/postrm)
# 0644 for conffiles, 0755 for the maintainer scripts, whatever the checkout's modes.
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

include(CPack)
