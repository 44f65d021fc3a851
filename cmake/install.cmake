# What `cmake --install` and the package (cmake/package.cmake) install, in named components:
#   runtime     the binary (stripped by `cmake --install --strip` and by cpack)
#   man         the man pages, gzipped
#   systemd     the units (ExecStart= from the install prefix), the check timer, sysusers.d/outbox.conf
#   doc         copyright, changelog, the example config
#   monitoring  Prometheus alert rules and a Grafana dashboard (monitoring/)
#   deb         the package's lintian overrides (packaging/deb), in the package only
#   config      /etc/outbox: the example config and the units' environment files. Not part of a
#               plain `cmake --install`, which writes nothing outside its prefix and never over a
#               config in use: the package holds them as conffiles, or as root
#               `cmake --install build --component config` copies them.
include(GNUInstallDirs)

set(OUTBOX_SYSTEMD_UNITDIR "lib/systemd/system" CACHE STRING
    "Where the systemd units go, relative to the install prefix or absolute")
set(OUTBOX_SYSUSERSDIR "lib/sysusers.d" CACHE STRING
    "Where sysusers.d/outbox.conf goes, relative to the install prefix or absolute (systemd reads /usr/lib/sysusers.d, not /usr/local/lib)")
# The binary reads /etc/outbox/outbox.toml whatever the prefix, and the units name these files.
set(OUTBOX_CONFIG_DIR "/etc/outbox")

install(TARGETS outbox RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT runtime)

# Man pages gzipped (-n: no name or time stamp, so a rebuild gives the same bytes), as Debian wants
# them; man and mandoc read them so wherever they are installed.
file(GLOB OUTBOX_MAN_PAGES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/man/*.[158])
set(OUTBOX_GZIPPED_MAN_PAGES)
foreach(page IN LISTS OUTBOX_MAN_PAGES)
  get_filename_component(name ${page} NAME)
  string(REGEX REPLACE ".*\\.([158])$" "\\1" section ${name})
  set(gzipped ${PROJECT_BINARY_DIR}/man/${name}.gz)
  add_custom_command(OUTPUT ${gzipped} COMMAND ${CMAKE_COMMAND} -E make_directory ${PROJECT_BINARY_DIR}/man
                     COMMAND sh -c "gzip -9n -c \"$1\" >\"$2\"" sh ${page} ${gzipped}
                     DEPENDS ${page} VERBATIM)
  list(APPEND OUTBOX_GZIPPED_MAN_PAGES ${gzipped})
  install(FILES ${gzipped} DESTINATION ${CMAKE_INSTALL_MANDIR}/man${section} COMPONENT man)
endforeach()

set(OUTBOX_CHANGELOG_GZ ${PROJECT_BINARY_DIR}/packaging/changelog.gz)
add_custom_command(OUTPUT ${OUTBOX_CHANGELOG_GZ} COMMAND ${CMAKE_COMMAND} -E make_directory ${PROJECT_BINARY_DIR}/packaging
                   COMMAND sh -c "gzip -9n -c \"$1\" >\"$2\"" sh ${PROJECT_SOURCE_DIR}/packaging/deb/changelog
                           ${OUTBOX_CHANGELOG_GZ}
                   DEPENDS ${PROJECT_SOURCE_DIR}/packaging/deb/changelog VERBATIM)
add_custom_target(outbox_install_files ALL DEPENDS ${OUTBOX_GZIPPED_MAN_PAGES} ${OUTBOX_CHANGELOG_GZ})

# The units are written at install time, for the prefix of that install (cmake/install_units.cmake).
file(GLOB OUTBOX_UNIT_TEMPLATES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/systemd/*.service.in
     ${PROJECT_SOURCE_DIR}/systemd/*.timer)
install(CODE "set(OUTBOX_UNIT_TEMPLATES \"${OUTBOX_UNIT_TEMPLATES}\")
              set(OUTBOX_UNIT_STAGING \"${PROJECT_BINARY_DIR}/systemd-units\")
              set(OUTBOX_INSTALL_BINDIR \"${CMAKE_INSTALL_BINDIR}\")
              set(OUTBOX_INSTALL_UNITDIR \"${OUTBOX_SYSTEMD_UNITDIR}\")
              include(\"${PROJECT_SOURCE_DIR}/cmake/install_units.cmake\")"
        COMPONENT systemd)
install(FILES ${PROJECT_SOURCE_DIR}/systemd/outbox.sysusers DESTINATION ${OUTBOX_SYSUSERSDIR} RENAME outbox.conf
        COMPONENT systemd)

install(FILES ${PROJECT_SOURCE_DIR}/packaging/deb/copyright ${OUTBOX_CHANGELOG_GZ} DESTINATION ${CMAKE_INSTALL_DOCDIR}
        COMPONENT doc)
install(FILES ${PROJECT_SOURCE_DIR}/etc/outbox.toml DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples COMPONENT doc)

install(FILES ${PROJECT_SOURCE_DIR}/monitoring/outbox.rules.yml ${PROJECT_SOURCE_DIR}/monitoring/outbox-dashboard.json
        DESTINATION ${CMAKE_INSTALL_DATADIR}/outbox/monitoring COMPONENT monitoring)

# 0640 root:root here; the package's postinst gives the group outbox (dpkg-statoverride). A
# `cmake --install --component config` leaves that to the operator: chgrp outbox /etc/outbox/*.
install(FILES ${PROJECT_SOURCE_DIR}/etc/outbox.toml ${PROJECT_SOURCE_DIR}/etc/relay.env
              ${PROJECT_SOURCE_DIR}/etc/replicate-main.env ${PROJECT_SOURCE_DIR}/etc/check.env
        DESTINATION ${OUTBOX_CONFIG_DIR} PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ
        COMPONENT config EXCLUDE_FROM_ALL)
install(FILES ${PROJECT_SOURCE_DIR}/packaging/deb/lintian-overrides DESTINATION ${CMAKE_INSTALL_DATADIR}/lintian/overrides
        RENAME outbox COMPONENT deb EXCLUDE_FROM_ALL)
