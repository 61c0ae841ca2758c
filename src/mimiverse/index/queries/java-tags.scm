; Java tags: definitions and references (for chunking and the symbol map).

(class_declaration
  name: (identifier) @name.definition.class) @definition.class

(record_declaration
  name: (identifier) @name.definition.class) @definition.class

(interface_declaration
  name: (identifier) @name.definition.interface) @definition.interface

(annotation_type_declaration
  name: (identifier) @name.definition.interface) @definition.interface

(enum_declaration
  name: (identifier) @name.definition.enum) @definition.enum

(method_declaration
  name: (identifier) @name.definition.method) @definition.method

(constructor_declaration
  name: (identifier) @name.definition.method) @definition.method

(compact_constructor_declaration
  name: (identifier) @name.definition.method) @definition.method

(method_invocation
  name: (identifier) @name.reference.call) @reference.call

(object_creation_expression
  type: [
    (type_identifier) @name.reference.class
    (generic_type
      (type_identifier) @name.reference.class)
  ]) @reference.class

(super_interfaces
  (type_list
    (type_identifier) @name.reference.implementation)) @reference.implementation

(superclass
  (type_identifier) @name.reference.class) @reference.class

(import_declaration
  (scoped_identifier) @name.reference.import) @reference.import
