"""Health IT's standard audit records, mapped onto Guetteur's access-event contract.

FHIR servers log accesses as ``AuditEvent`` resources (IHE BALP profiles), hospital systems as
IHE ATNA / DICOM PS3.15 audit messages. The modules here turn one such record into the access
events it describes, or say which element could not be mapped and why: never a guess. They are
pure (bytes in, contract JSON out, no I/O) so the worker, the HTTP endpoint and the offline
``detect`` command all map alike, and a test can feed them anything.

- ``table``: what maps to what (roles, data categories, purposes, sites), configuration with
  defaults, read from the policy file's ``[mapping]`` section;
- ``fhir``: FHIR R4/R5 ``AuditEvent`` resources and Bundles of them, their ids and refusals;
- ``auditevent``: an AuditEvent's elements, read from R4 or R5 alike;
- ``atna``: DICOM PS3.15 ``AuditMessage`` XML;
- ``common``: what both share (the result type, stable event ids, codes).
"""
